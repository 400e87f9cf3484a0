//! Table tests of the admission policy: (agents, loads, caps, queue) -> steps.

use std::collections::{BTreeMap, HashMap};

use coordinator_core::{
    AdmissionInput, AdmissionStep, AgentId, AgentSlots, AgentView, Loads, PlacementNode,
    QueuedNode, admit, free_slots,
};
use uuid::Uuid;

/// A healthy, connected, undrained agent with `active` of `capacity` boot slots in use.
fn agent(id: &str, capacity: u32, active: u32) -> AgentSlots {
    AgentSlots {
        view: AgentView {
            id: id.into(),
            capacity,
            bmc_networks: Vec::new(),
            labels: BTreeMap::new(),
            healthy: true,
            drained: false,
        },
        connected: true,
        active,
    }
}

/// An agent whose session is gone (the engine then marks it unhealthy as well).
fn gone(id: &str, capacity: u32) -> AgentSlots {
    let mut a = agent(id, capacity, 0);
    a.view.healthy = false;
    a.connected = false;
    a
}

fn drained(id: &str, capacity: u32) -> AgentSlots {
    let mut a = agent(id, capacity, 0);
    a.view.drained = true;
    a
}

fn labelled(mut a: AgentSlots, k: &str, v: &str) -> AgentSlots {
    a.view.labels.insert(k.into(), v.into());
    a
}

/// A queued node: `n` names it (uuid `n`), `current` is the agent it is placed on.
#[derive(Clone, Copy)]
struct Q {
    n: u128,
    needs_slot: bool,
    placed: bool,
    current: Option<&'static str>,
    /// Still held by the caller.
    known: bool,
    /// A `share_selector` of one label.
    selector: Option<(&'static str, &'static str)>,
}

/// A deploy (needs a slot) already told it is placed on `current`.
fn deploy_on(n: u128, current: &'static str) -> Q {
    Q {
        n,
        needs_slot: true,
        placed: true,
        current: Some(current),
        known: true,
        selector: None,
    }
}

/// A deploy that was not placed yet.
fn deploy_new(n: u128) -> Q {
    Q {
        placed: false,
        current: None,
        ..deploy_on(n, "")
    }
}

/// Verify/clean work (no slot) already placed on `current`.
fn work_on(n: u128, current: &'static str) -> Q {
    Q {
        needs_slot: false,
        ..deploy_on(n, current)
    }
}

struct Row {
    name: &'static str,
    agents: Vec<AgentSlots>,
    loads: &'static [(&'static str, u64)],
    global_cap: u32,
    active_total: u32,
    queue: Vec<Q>,
    want: &'static [&'static str],
}

fn row(
    name: &'static str,
    agents: Vec<AgentSlots>,
    queue: Vec<Q>,
    want: &'static [&'static str],
) -> Row {
    let active_total = agents.iter().map(|a| a.active).sum();
    Row {
        name,
        agents,
        loads: &[],
        global_cap: 0,
        active_total,
        queue,
        want,
    }
}

/// Compact names of steps, for table rows.
fn names(steps: &[AdmissionStep]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            AdmissionStep::Forget { node } => format!("forget n{}", node.as_u128()),
            AdmissionStep::Place { node, agent } => format!("place n{} {agent}", node.as_u128()),
            AdmissionStep::Admit {
                node,
                agent,
                takes_slot,
            } => format!(
                "admit n{} {agent}{}",
                node.as_u128(),
                if *takes_slot { " slot" } else { "" }
            ),
        })
        .collect()
}

fn table() -> Vec<Row> {
    vec![
        row(
            "empty queue: nothing to do",
            vec![agent("a1", 2, 0)],
            vec![],
            &[],
        ),
        row(
            "a placed deploy on its agent with a free slot is admitted and takes the slot",
            vec![agent("a1", 2, 0)],
            vec![deploy_on(1, "a1")],
            &["admit n1 a1 slot"],
        ),
        row(
            "a deploy not told yet is placed, then admitted",
            vec![agent("a1", 2, 0)],
            vec![Q {
                placed: false,
                ..deploy_on(1, "a1")
            }],
            &["place n1 a1", "admit n1 a1 slot"],
        ),
        row(
            "a new deploy is placed by placement (the only agent)",
            vec![agent("a1", 2, 0)],
            vec![deploy_new(1)],
            &["place n1 a1", "admit n1 a1 slot"],
        ),
        row(
            "verify/clean work needs no slot: admitted on a full agent",
            vec![agent("a1", 1, 1)],
            vec![work_on(1, "a1")],
            &["admit n1 a1"],
        ),
        row(
            "no free slot anywhere: a placed deploy waits, untouched",
            vec![agent("a1", 1, 1)],
            vec![deploy_on(1, "a1")],
            &[],
        ),
        row(
            "no free slot anywhere: a new deploy is still placed, then waits",
            vec![agent("a1", 1, 1)],
            vec![deploy_new(1)],
            &["place n1 a1"],
        ),
        row(
            "slots taken in the round count: arrival order wins",
            vec![agent("a1", 2, 1)],
            vec![deploy_on(1, "a1"), deploy_on(2, "a1")],
            &["admit n1 a1 slot"],
        ),
        Row {
            global_cap: 1,
            ..row(
                "global cap reached: deploys wait, verify/clean behind them goes on",
                vec![agent("a1", 4, 1)],
                vec![deploy_on(1, "a1"), work_on(2, "a1")],
                &["admit n2 a1"],
            )
        },
        Row {
            global_cap: 2,
            ..row(
                "global cap counts the slots taken in the round",
                vec![agent("a1", 4, 1)],
                vec![deploy_on(1, "a1"), deploy_on(2, "a1"), work_on(3, "a1")],
                &["admit n1 a1 slot", "admit n3 a1"],
            )
        },
        row(
            "nodes behind a full agent do not block the nodes of another agent",
            vec![agent("a1", 1, 1), agent("a2", 1, 0)],
            vec![deploy_on(1, "a1"), deploy_on(2, "a2")],
            &["admit n2 a2 slot"],
        ),
        row(
            "current agent gone: re-placed on the healthy one, then admitted",
            vec![gone("a1", 4), agent("a2", 1, 0)],
            vec![deploy_on(1, "a1")],
            &["place n1 a2", "admit n1 a2 slot"],
        ),
        row(
            "current agent drained: re-placed on the undrained one",
            vec![drained("a1", 4), agent("a2", 1, 0)],
            vec![work_on(1, "a1")],
            &["place n1 a2", "admit n1 a2"],
        ),
        row(
            "no eligible agent: a new deploy waits unplaced",
            vec![gone("a1", 4), drained("a2", 4)],
            vec![Q {
                needs_slot: false,
                ..deploy_new(1)
            }],
            &[],
        ),
        row(
            "a node the caller no longer holds leaves the queue",
            vec![agent("a1", 2, 0)],
            vec![
                Q {
                    known: false,
                    ..deploy_on(1, "a1")
                },
                deploy_on(2, "a1"),
            ],
            &["forget n1", "admit n2 a1 slot"],
        ),
        Row {
            global_cap: 1,
            ..row(
                "a forgotten deploy behind the global cap stays until its turn",
                vec![agent("a1", 2, 1)],
                vec![Q {
                    known: false,
                    ..deploy_on(1, "a1")
                }],
                &[],
            )
        },
        Row {
            loads: &[("a1", 5), ("a2", 3)],
            ..row(
                "work-conserving: a deploy behind a full agent takes a free slot of an agent with two nodes fewer",
                vec![agent("a1", 1, 1), agent("a2", 1, 0)],
                vec![deploy_on(1, "a1")],
                &["place n1 a2", "admit n1 a2 slot"],
            )
        },
        Row {
            loads: &[("a1", 5), ("a2", 4)],
            ..row(
                "work-conserving: one node fewer is not enough, the deploy waits",
                vec![agent("a1", 1, 1), agent("a2", 1, 0)],
                vec![deploy_on(1, "a1")],
                &[],
            )
        },
        Row {
            loads: &[("a1", 5), ("a2", 0)],
            ..row(
                "work-conserving: the other agent must carry the node's labels",
                vec![
                    labelled(agent("a1", 1, 1), "rack", "r1"),
                    labelled(agent("a2", 1, 0), "rack", "r2"),
                ],
                vec![Q {
                    selector: Some(("rack", "r1")),
                    ..deploy_on(1, "a1")
                }],
                &[],
            )
        },
        Row {
            loads: &[("a1", 5), ("a2", 0), ("a3", 4)],
            ..row(
                "work-conserving: the other agent needs a free slot and a session",
                vec![agent("a1", 1, 1), agent("a2", 1, 1), agent("a3", 1, 0)],
                vec![deploy_on(1, "a1")],
                &[],
            )
        },
        Row {
            loads: &[("a1", 4), ("a2", 2)],
            ..row(
                "work-conserving: loads follow each move within the round",
                vec![agent("a1", 1, 1), agent("a2", 2, 0)],
                vec![deploy_on(1, "a1"), deploy_on(2, "a1")],
                &["place n1 a2", "admit n1 a2 slot"],
            )
        },
        Row {
            loads: &[("a1", 5), ("a2", 0)],
            ..row(
                "work-conserving is for deploys: verify/clean work stays on its agent",
                vec![agent("a1", 1, 1), agent("a2", 1, 0)],
                vec![work_on(1, "a1")],
                &["admit n1 a1"],
            )
        },
    ]
}

#[test]
fn admission_table() {
    let empty = BTreeMap::new();
    for r in table() {
        let currents: Vec<Option<AgentId>> = r
            .queue
            .iter()
            .map(|q| q.current.map(AgentId::from))
            .collect();
        let selectors: Vec<BTreeMap<String, String>> = r
            .queue
            .iter()
            .map(|q| {
                q.selector
                    .map(|(k, v)| BTreeMap::from([(k.to_string(), v.to_string())]))
                    .unwrap_or_default()
            })
            .collect();
        let queue: Vec<QueuedNode<'_>> = r
            .queue
            .iter()
            .zip(&selectors)
            .zip(&currents)
            .map(|((q, sel), current)| QueuedNode {
                uuid: Uuid::from_u128(q.n),
                needs_slot: q.needs_slot,
                placed: q.placed,
                node: q.known.then(|| PlacementNode {
                    uuid: Uuid::from_u128(q.n),
                    bmc_ip: Some("10.0.0.1".parse().unwrap()),
                    share_selector: if q.selector.is_some() { sel } else { &empty },
                    current: current.as_ref(),
                }),
            })
            .collect();
        let per_agent: HashMap<AgentId, u64> = r
            .loads
            .iter()
            .map(|(a, n)| (AgentId::from(*a), *n))
            .collect();
        let loads = Loads {
            total: per_agent.values().sum(),
            per_agent,
        };
        let steps = admit(&AdmissionInput {
            queue: &queue,
            agents: &r.agents,
            loads: &loads,
            global_cap: r.global_cap,
            active_total: r.active_total,
        });
        assert_eq!(names(&steps), r.want, "{}", r.name);
    }
}

#[test]
fn free_slots_count_only_agents_that_can_take_work() {
    let agents = [
        agent("a1", 4, 1),
        agent("a2", 2, 2),
        gone("a3", 8),
        drained("a4", 8),
        AgentSlots {
            // Over its capacity (it shrank in a new hello): no free slot, not negative.
            active: 5,
            ..agent("a5", 3, 0)
        },
    ];
    assert_eq!(free_slots(&agents), 3);
    assert_eq!(free_slots(&[]), 0);
}
