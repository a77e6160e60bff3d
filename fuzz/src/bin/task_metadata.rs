//! ECS task metadata v4 (`${ECS_CONTAINER_METADATA_URI_V4}/task`): JSON from the agent, parsed
//! into the task's identity and addresses. No panic; addresses deduplicated.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(m) = dualprobe::aws::task_metadata::parse(text) {
            let _ = m.task_id();
            for (i, a) in m.ipv4.iter().enumerate() {
                assert!(!m.ipv4[..i].contains(a), "{a} listed twice");
            }
            for (i, a) in m.ipv6.iter().enumerate() {
                assert!(!m.ipv6[..i].contains(a), "{a} listed twice");
            }
            assert!(
                !m.cluster.contains('/'),
                "cluster keeps an ARN prefix: {}",
                m.cluster
            );
        }
    });
}
