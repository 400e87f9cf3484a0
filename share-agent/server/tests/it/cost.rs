//! Cost of preparing nodes: agent CPU, bytes on the share and BMC requests
//! per node, measured on the real process against the simulator.

use std::time::{Duration, Instant};

use crate::common::*;
use vmedia_proto::v1 as pb;

/// utime + stime of a process, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz: f64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    ticks * 1000.0 / hz
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_per_prepared_node() {
    const N: usize = 40;
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    std::fs::write(agent.share.join("deploy.iso"), vec![0u8; 1 << 20]).unwrap();
    let (sim, ca) = start_sim(N, &agent.share, Boots::default(), None).await;
    let pid = agent.child.id().unwrap();
    let cpu0 = cpu_ms(pid);
    let t0 = Instant::now();
    for i in 0..N {
        stub.send(pb::Job {
            job_id: format!("cost-{i}"),
            node_uuid: format!("cost-node-{i}"),
            bmc: Some(bmc_target(&sim, i, &ca, 10)),
            kind: Some(pb::job::Kind::PrepareRamdisk(pb::PrepareRamdisk {
                deploy_iso: "deploy.iso".into(),
                agent_token: "token-abcdefabcdefabcdefabcdefabcdef".into(),
                ..Default::default()
            })),
        })
        .await;
    }
    let mut outs = Vec::new();
    for i in 0..N {
        let d = stub
            .final_update(&format!("cost-{i}"), Duration::from_secs(120))
            .await;
        assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
        outs.push(d.output.unwrap());
    }
    let wall = t0.elapsed();
    let cpu = cpu_ms(pid) - cpu0;
    let reqs: u64 = outs.iter().map(|o| u64::from(o.bmc_requests)).sum();
    let sim_reqs = sim.total_counters().total;
    assert_eq!(
        reqs, sim_reqs,
        "JobOutput agrees with the simulator's counters"
    );
    let written: u64 = outs.iter().map(|o| o.bytes_written).sum();
    let allocated: u64 = outs.iter().map(|o| o.bytes_allocated).sum();
    let files: u32 = outs.iter().map(|o| o.files_written).sum();
    eprintln!(
        "MEASURE {N} nodes: wall {:?}, agent CPU {:.1} ms/node, BMC requests {:.1}/node, files {:.1}/node, bytes written {}/node, allocated {}/node",
        wall,
        cpu / N as f64,
        reqs as f64 / N as f64,
        f64::from(files) / N as f64,
        written / N as u64,
        allocated / N as u64
    );
    assert_eq!(files as usize, N);
    assert!(allocated / N as u64 <= 64 * 1024);
    sim.shutdown().await;
}
