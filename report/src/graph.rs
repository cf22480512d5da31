//! The service graph around a finding as inline SVG: callers on the left,
//! dependencies on the right, the propagation path in orange and the likely
//! root cause in red.
//!
//! A small layered layout (longest-path layers, barycentre ordering) written
//! here: neighbourhoods are a dozen nodes, and the picture must read left to
//! right like a call chain, which general graph-layout crates do not promise.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use vigil_model::{EntityId, GraphLink};

use crate::format::{ellipsize, xml_escape};

const NODE_W: f64 = 200.0;
const NODE_H: f64 = 40.0;
const COL_GAP: f64 = 80.0;
const ROW_GAP: f64 = 18.0;
const MARGIN: f64 = 16.0;

/// What to draw.
pub(crate) struct GraphInput<'a> {
    /// Calls among the neighbourhood (caller → callee).
    pub links: &'a [GraphLink],
    /// From the root cause to the symptom.
    pub path: &'a [EntityId],
    /// The finding's own entity (the symptom).
    pub symptom: &'a EntityId,
    /// Unique within the page, for marker ids.
    pub id: usize,
    /// Accessible label.
    pub label: &'a str,
}

/// The graph as an `<svg class="service-graph">`, or `None` with nothing to draw.
pub(crate) fn service_graph(input: &GraphInput<'_>) -> Option<String> {
    let mut edges: BTreeSet<(&EntityId, &EntityId)> = input
        .links
        .iter()
        .filter(|l| l.from != l.to)
        .map(|l| (&l.from, &l.to))
        .collect();
    // Path steps highlight the call they travelled; a step the neighbourhood
    // lacks is drawn as the call the symptom side makes to the cause side.
    let mut on_path: BTreeSet<(&EntityId, &EntityId)> = BTreeSet::new();
    for pair in input.path.windows(2) {
        let (cause, effect) = (&pair[0], &pair[1]);
        if cause == effect {
            continue;
        }
        if edges.contains(&(cause, effect)) {
            on_path.insert((cause, effect));
        } else {
            edges.insert((effect, cause));
            on_path.insert((effect, cause));
        }
    }
    let mut nodes: BTreeSet<&EntityId> = edges.iter().flat_map(|(a, b)| [*a, *b]).collect();
    nodes.extend(input.path.iter());
    if nodes.len() < 2 {
        return None;
    }
    let nodes: Vec<&EntityId> = nodes.into_iter().collect();
    let index: BTreeMap<&EntityId, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let edge_idx: Vec<(usize, usize)> = edges.iter().map(|(a, b)| (index[a], index[b])).collect();

    // Longest-path layering; bounded relaxation so a cycle cannot loop forever.
    let mut layer = vec![0usize; nodes.len()];
    for _ in 0..nodes.len() {
        let mut changed = false;
        for &(a, b) in &edge_idx {
            if layer[b] < layer[a] + 1 && layer[a] + 1 < nodes.len() {
                layer[b] = layer[a] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let layers = layer.iter().max().map_or(1, |m| m + 1);
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (i, &l) in layer.iter().enumerate() {
        columns[l].push(i);
    }
    columns.retain(|c| !c.is_empty());

    // Barycentre sweeps: order each column by the mean row of its neighbours.
    let mut row = vec![0.0f64; nodes.len()];
    let assign = |columns: &Vec<Vec<usize>>, row: &mut Vec<f64>| {
        for column in columns {
            for (r, &i) in column.iter().enumerate() {
                let r = r as f64;
                row[i] = r;
            }
        }
    };
    assign(&columns, &mut row);
    for sweep in 0..4 {
        for column in &mut columns {
            let mut keyed: Vec<(f64, usize)> = column
                .iter()
                .map(|&i| {
                    let neighbours: Vec<f64> = edge_idx
                        .iter()
                        .filter_map(|&(a, b)| match (a == i, b == i, sweep % 2) {
                            (_, true, 0) => Some(row[a]),
                            (true, _, 1) => Some(row[b]),
                            _ => None,
                        })
                        .collect();
                    let key = if neighbours.is_empty() {
                        row[i]
                    } else {
                        let n = neighbours.len() as f64;
                        neighbours.iter().sum::<f64>() / n
                    };
                    (key, i)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            *column = keyed.into_iter().map(|(_, i)| i).collect();
        }
        assign(&columns, &mut row);
    }

    let tallest = columns.iter().map(Vec::len).max().unwrap_or(1);
    let (width, height) = (
        MARGIN * 2.0 + columns.len() as f64 * NODE_W + (columns.len() as f64 - 1.0) * COL_GAP,
        MARGIN * 2.0 + tallest as f64 * (NODE_H + ROW_GAP) - ROW_GAP,
    );
    let mut pos = vec![(0.0f64, 0.0f64); nodes.len()];
    for (c, column) in columns.iter().enumerate() {
        let (x, offset) = (
            MARGIN + c as f64 * (NODE_W + COL_GAP),
            (height - MARGIN * 2.0 - column.len() as f64 * (NODE_H + ROW_GAP) + ROW_GAP) / 2.0,
        );
        for (r, &i) in column.iter().enumerate() {
            let y = MARGIN + offset + r as f64 * (NODE_H + ROW_GAP);
            pos[i] = (x, y);
        }
    }

    let root = input.path.first();
    let path_nodes: BTreeSet<&EntityId> = input.path.iter().collect();
    let id = input.id;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="service-graph" viewBox="0 0 {width:.0} {height:.0}" style="max-width:{width:.0}px" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg"><defs><marker id="arrow-{id}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8a94a6"/></marker><marker id="arrow-hot-{id}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#e65100"/></marker></defs>"##,
        xml_escape(input.label)
    );
    // Plain edges first so highlighted ones are drawn on top.
    let mut ordered: Vec<(usize, usize, bool)> = edges
        .iter()
        .map(|(a, b)| (index[a], index[b], on_path.contains(&(*a, *b))))
        .collect();
    ordered.sort_by_key(|e| e.2);
    for (a, b, hot) in ordered {
        let (ax, ay) = pos[a];
        let (bx, by) = pos[b];
        let (x1, y1, x2, y2) = if bx > ax {
            (ax + NODE_W, ay + NODE_H / 2.0, bx, by + NODE_H / 2.0)
        } else {
            // Back or same-column edge: leave from the bottom, arrive at the bottom.
            (
                ax + NODE_W / 2.0,
                ay + NODE_H,
                bx + NODE_W / 2.0,
                by + NODE_H,
            )
        };
        let bend = ((x2 - x1).abs() / 2.0).max(30.0);
        let (c1x, c1y, c2x, c2y) = if bx > ax {
            (x1 + bend, y1, x2 - bend, y2)
        } else {
            (x1, y1 + 40.0, x2, y2 + 40.0)
        };
        let (class, marker) = if hot {
            ("edge hot", format!("arrow-hot-{id}"))
        } else {
            ("edge", format!("arrow-{id}"))
        };
        let _ = write!(
            svg,
            r#"<path class="{class}" d="M{x1:.1},{y1:.1} C{c1x:.1},{c1y:.1} {c2x:.1},{c2y:.1} {x2:.1},{y2:.1}" marker-end="url(#{marker})"><title>{} → {}</title></path>"#,
            xml_escape(nodes[a].as_str()),
            xml_escape(nodes[b].as_str())
        );
    }
    for (i, node) in nodes.iter().enumerate() {
        let (x, y) = pos[i];
        let class = if Some(*node) == root {
            "node root"
        } else if path_nodes.contains(node) {
            "node path"
        } else if *node == input.symptom {
            "node symptom"
        } else {
            "node"
        };
        let _ = write!(
            svg,
            r#"<g class="{class}" data-entity="{}"><title>{}</title><rect x="{x:.1}" y="{y:.1}" width="{NODE_W}" height="{NODE_H}" rx="6"/><text class="kind" x="{:.1}" y="{:.1}">{}</text><text class="name" x="{:.1}" y="{:.1}">{}</text></g>"#,
            xml_escape(node.as_str()),
            xml_escape(node.as_str()),
            x + 8.0,
            y + 14.0,
            xml_escape(node.kind().as_str()),
            x + 8.0,
            y + 31.0,
            xml_escape(&ellipsize(node.name(), 26))
        );
    }
    svg.push_str("</svg>");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::EntityKind;

    fn service(name: &str) -> EntityId {
        EntityId::new(EntityKind::Service, name)
    }

    #[test]
    fn root_and_path_are_highlighted() {
        let db = EntityId::new(EntityKind::Database, "mysqld@10.0.0.5:3306");
        let links = vec![
            GraphLink {
                from: service("web"),
                to: service("order-api"),
            },
            GraphLink {
                from: service("order-api"),
                to: db.clone(),
            },
            GraphLink {
                from: service("web"),
                to: service("cart"),
            },
        ];
        let path = vec![db.clone(), service("order-api"), service("web")];
        let svg = service_graph(&GraphInput {
            links: &links,
            path: &path,
            symptom: &service("web"),
            id: 3,
            label: "graph",
        })
        .expect("draws");
        assert_eq!(svg.matches("class=\"node root\"").count(), 1);
        assert_eq!(svg.matches("class=\"node path\"").count(), 2);
        assert_eq!(svg.matches("class=\"edge hot\"").count(), 2);
        assert_eq!(svg.matches("class=\"edge\"").count(), 1);
        assert!(svg.contains("data-entity=\"database:mysqld@10.0.0.5:3306\""));
        assert!(svg.contains("id=\"arrow-3\""));
    }

    #[test]
    fn cycles_terminate() {
        let links = vec![
            GraphLink {
                from: service("a"),
                to: service("b"),
            },
            GraphLink {
                from: service("b"),
                to: service("a"),
            },
        ];
        let svg = service_graph(&GraphInput {
            links: &links,
            path: &[],
            symptom: &service("a"),
            id: 0,
            label: "g",
        });
        assert!(svg.is_some());
    }
}
