//! Scoped investigations and chat answers over a simulated estate with a
//! planted CPU fault: the CPU-burning service is named with its evidence and
//! hottest stack, and "who burns CPU" / "what changed" answer with numbers.

use std::sync::Arc;

use vigil_assistant::{ask, investigate, AskOptions, Intent, InvestigateOptions};
use vigil_model::{EntityKind, FaultKind, Language, RelationKind, TelemetrySource};
use vigil_sim::{Estate, FaultSpec, SimConfig, DEFAULT_START};
use vigil_store::embedded::EmbeddedStore;

const FAULT_START: u32 = 1500;

async fn estate() -> (Arc<EmbeddedStore>, vigil_model::PlantedFault, Estate) {
    let estate = Estate::new(SimConfig {
        seed: 5,
        services: 16,
        start: DEFAULT_START,
        minutes: 1560,
        faults: vec![FaultSpec {
            kind: FaultKind::CpuNotReleased,
            target: None,
            start_minute: FAULT_START,
            duration_minutes: 60,
        }],
        ..SimConfig::default()
    })
    .expect("estate");
    let store = EmbeddedStore::open_in_memory().expect("store");
    for batch in estate.batches(240) {
        store.write(&batch).await.expect("write");
    }
    let fault = estate.faults()[0].clone();
    (Arc::new(store), fault, estate)
}

#[tokio::test]
async fn cpu_not_released_is_found_with_its_hot_stack_and_answered_in_both_languages() {
    let (store, fault, estate) = estate().await;
    let at = DEFAULT_START.plus_secs(i64::from(FAULT_START + 20) * 60);
    let source: &dyn TelemetrySource = store.as_ref();
    let found = investigate(
        source,
        &fault.root_cause,
        at,
        &InvestigateOptions::default(),
    )
    .await
    .expect("investigation");
    let top: Vec<String> = found
        .suggestions
        .iter()
        .take(3)
        .map(|s| s.entity.to_string())
        .collect();
    assert!(top.contains(&fault.root_cause.to_string()), "{top:?}");
    let cause = found
        .suggestions
        .iter()
        .find(|s| s.entity == fault.root_cause)
        .expect("cause");
    assert!(
        cause.evidence.iter().any(|e| e.signal == "cpu-cores"),
        "{cause:?}"
    );
    assert!(
        cause
            .hot_stack
            .as_deref()
            .is_some_and(|s| s.contains("crypto::hash_loop")),
        "{cause:?}"
    );

    // Its container is named by "who burns CPU", in English and Chinese.
    let options = AskOptions::default();
    let answer = ask("who burns CPU in the last 30 minutes", source, at, &options).await;
    assert_eq!(answer.intent, Intent::WhoBurnsCpu);
    assert!(answer.answered);
    let first_line = answer.text.lines().nth(1).expect("a consumer");
    assert!(
        first_line.contains(fault.root_cause.as_str()),
        "{}",
        answer.text
    );
    assert!(answer.text.contains("crypto::hash_loop"), "{}", answer.text);
    let answer = ask("过去30分钟谁在消耗CPU", source, at, &options).await;
    assert_eq!(answer.language, Language::Zh);
    assert!(answer.text.contains("CPU 消耗最高"), "{}", answer.text);

    // Is it healthy? No; and a service it does not depend on is.
    let answer = ask(
        &format!("is {} healthy", fault.root_cause.name()),
        source,
        at,
        &options,
    )
    .await;
    assert_eq!(answer.intent, Intent::IsHealthy);
    assert!(answer.text.starts_with("No"), "{}", answer.text);

    // Compare with yesterday: numbers for both days.
    let answer = ask(
        &format!("compare {} with yesterday", fault.root_cause.name()),
        source,
        at,
        &options,
    )
    .await;
    assert_eq!(answer.intent, Intent::CompareWithYesterday);
    assert!(answer.text.contains("p99"), "{}", answer.text);

    // A gateway calling the service: the investigation reads only its closure.
    let caller = estate
        .topology()
        .relations
        .iter()
        .find(|r| r.kind == RelationKind::Calls && r.to == fault.root_cause)
        .map(|r| r.from.clone())
        .expect("a caller");
    assert_eq!(caller.kind(), EntityKind::Service);
    let from_caller = investigate(source, &caller, at, &InvestigateOptions::default())
        .await
        .expect("investigation");
    assert!(from_caller.entities_read < estate.topology().entities.len());
}
