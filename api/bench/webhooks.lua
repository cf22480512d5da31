-- wrk script: Alertmanager v4 webhooks, each with a new fingerprint (so each
-- opens an incident and runs a full investigation), cycling over services.
-- VIGIL_AT: the alert time as RFC 3339 (the simulated fault + 10 min).
-- VIGIL_REPEAT=1: the same fingerprint per service (Alertmanager re-sending
-- an open alert: the deduplicated path).
local at = os.getenv("VIGIL_AT") or "2024-01-02T01:10:00Z"
local services = {"gateway", "mobile-gateway", "partner-gateway", "admin-gateway",
                  "order-api", "payment-api", "user-api", "cart-api", "catalog-api", "search-api"}
local repeat_alerts = os.getenv("VIGIL_REPEAT") == "1"
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  math.randomseed(id + 1)
end

function request()
  counter = counter + 1
  local service = services[(counter % #services) + 1]
  local body = string.format([[{"version":"4","groupKey":"g","status":"firing","receiver":"vigil",
"groupLabels":{},"commonLabels":{"alertname":"HighLatency"},"commonAnnotations":{},"externalURL":"http://am",
"alerts":[{"status":"firing","labels":{"alertname":"HighLatency","service":"%s"},"annotations":{},
"startsAt":"%s","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom","fingerprint":"wrk-%d-%d"}]}]],
    service, at, repeat_alerts and 0 or id, repeat_alerts and (counter % #services) or counter)
  return wrk.format("POST", "/api/v1/alerts/alertmanager", {["Content-Type"] = "application/json"}, body)
end
