//! KindMachinePools against a real kube-apiserver and the real Docker engine, with core's
//! MachinePool controller played by the test (test/src/core_pool.rs): scaling, core's delete
//! annotation, template rollouts, failure domains, and the manager killed while a pool scales.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::Duration;

use capkind_api::v1beta2::{KindMachine, KindMachinePool};
use capkind_test::core::{CoreCluster, TRIVIAL_BOOTSTRAP};
use capkind_test::core_pool::CorePool;
use capkind_test::docker::sh;
use capkind_test::fixtures::{kind_spec, machine_spec};
use capkind_test::{Manager, names, shared, wait};
use kube::ResourceExt;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(240);
/// Every bootstrap run appends a line here, so a second run shows.
const RUNS: &str = "/var/lib/capkind-test-runs";

fn counted_bootstrap() -> String {
    TRIVIAL_BOOTSTRAP.replacen("runcmd:\n", &format!("runcmd:\n- echo run >> {RUNS}\n"), 1)
}

/// A cluster whose infrastructure is ready and whose control plane is initialized (pool
/// instances are workers), with the controllers running.
struct Env {
    core: CoreCluster,
    manager: Option<Manager>,
}

async fn env(kind_extra: serde_json::Value) -> Env {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let manager = Manager::start(client.clone(), &ns).await;
    let mut spec = kind_spec(&names::unique("net"));
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), kind_extra.as_object()) {
        spec.extend(extra.clone());
    }
    let core = CoreCluster::create(&client, &ns, &names::unique("mp"), spec, machine_spec())
        .await
        .expect("create the cluster");
    core.infrastructure_ready(TIMEOUT).await;
    core.control_plane_initialized().await;
    Env {
        core,
        manager: Some(manager),
    }
}

impl Env {
    async fn pool(&self, replicas: i32, spec: serde_json::Value) -> CorePool {
        self.core
            .add_pool("pool", replicas, "v1.31.0", &counted_bootstrap(), spec)
            .await
            .expect("MachinePool and KindMachinePool")
    }

    /// The cluster's node containers (the load balancer left out), with whether each runs.
    fn containers(&self) -> Vec<(String, bool)> {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                &format!(
                    "label={}={}",
                    capkind::docker::labels::CLUSTER,
                    self.core.name
                ),
                "--format",
                "{{.Names}} {{.State}}",
            ])
            .output()
            .expect("docker ps");
        let lb = format!("{}-lb", self.core.name);
        let mut all: Vec<(String, bool)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(name, _)| *name != lb)
            .map(|(name, state)| (name.to_string(), state == "running"))
            .collect();
        all.sort();
        all
    }

    fn container_of(&self, instance: &str) -> String {
        capkind::node::container_name(&self.core.name, instance)
    }
}

/// Waits until the pool has `n` ready instances and nothing else: the KindMachinePool ready
/// with `n` replicas and provider IDs, one running container per instance and no other, each
/// bootstrapped exactly once. Returns the instances' names.
async fn settled(env: &Env, pool: &CorePool, n: usize) -> Vec<String> {
    let names = wait::until(&format!("pool of {n} ready"), TIMEOUT, || async {
        let kmp: KindMachinePool = pool
            .kind_pools()
            .get(&pool.name)
            .await
            .map_err(|e| e.to_string())?;
        let st = kmp.status.clone().unwrap_or_default();
        let instances = pool.instances().await.map_err(|e| e.to_string())?;
        let names: Vec<String> = instances.iter().map(ResourceExt::name_any).collect();
        let expected: Vec<(String, bool)> =
            names.iter().map(|n| (env.container_of(n), true)).collect();
        let machines = pool
            .machines()
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let pool_machines = machines
            .items
            .iter()
            .filter(|m| names.contains(&m.name_any()))
            .count();
        let done = st.ready
            && st.replicas as usize == n
            && kmp.spec.provider_id_list.len() == n
            && names.len() == n
            && instances.iter().all(KindMachine::provisioned)
            && env.containers() == expected
            && pool_machines == n;
        if done {
            Ok(names)
        } else {
            Err(format!(
                "ready {} replicas {} ids {} machines {pool_machines} provisioned {:?} instances {names:?} containers {:?} conditions {:?}",
                st.ready,
                st.replicas,
                kmp.spec.provider_id_list.len(),
                instances.iter().map(KindMachine::provisioned).collect::<Vec<_>>(),
                env.containers(),
                st.conditions
                    .iter()
                    .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await;
    for name in &names {
        let runs = sh(&env.container_of(name), &format!("cat {RUNS}")).await;
        assert_eq!(runs.trim(), "run", "{name} bootstrapped once");
    }
    names
}

#[tokio::test]
async fn a_pool_scales_from_zero_to_five_to_two_to_zero() {
    let env = env(json!({})).await;
    let pool = env.pool(0, json!({"template": machine_spec()})).await;
    assert!(settled(&env, &pool, 0).await.is_empty());
    let kmp = pool.kind_pools().get(&pool.name).await.expect("pool");
    assert!(kmp.provisioned(), "an empty pool is provisioned");
    assert_eq!(
        kmp.status
            .and_then(|s| s.infrastructure_machine_kind)
            .as_deref(),
        Some("KindMachine")
    );

    pool.scale(5).await.expect("scale to 5");
    let five = settled(&env, &pool, 5).await;
    // Core copied the provider IDs, one per instance, as the instances have them.
    let mp = pool
        .machine_pools()
        .get(&pool.name)
        .await
        .expect("MachinePool");
    let mut ids: Vec<String> = pool
        .instances()
        .await
        .expect("instances")
        .iter()
        .map(|km| km.spec.provider_id.clone())
        .collect();
    ids.sort();
    assert_eq!(mp.spec.provider_id_list, ids);

    pool.scale(2).await.expect("scale to 2");
    let two = settled(&env, &pool, 2).await;
    assert!(two.iter().all(|n| five.contains(n)), "{two:?} of {five:?}");

    pool.scale(0).await.expect("scale to 0");
    settled(&env, &pool, 0).await;
    pool.delete(TIMEOUT).await.expect("delete the pool");
    assert!(env.containers().is_empty());
    env.core.delete().await.expect("delete the cluster");
}

#[tokio::test]
async fn the_instance_core_marks_for_deletion_goes_first() {
    let env = env(json!({})).await;
    let pool = env.pool(3, json!({"template": machine_spec()})).await;
    let three = settled(&env, &pool, 3).await;
    let marked = three[1].clone();
    pool.mark_for_deletion(&marked).await.expect("annotate");
    pool.scale(2).await.expect("scale to 2");
    let two = settled(&env, &pool, 2).await;
    let expected: Vec<String> = three.iter().filter(|n| **n != marked).cloned().collect();
    assert_eq!(two, expected);
    pool.delete(TIMEOUT).await.expect("delete the pool");
    env.core.delete().await.expect("delete the cluster");
}

#[tokio::test]
async fn a_template_change_rolls_every_instance_one_at_a_time() {
    let env = env(json!({})).await;
    let pool = env.pool(2, json!({"template": machine_spec()})).await;
    let before = settled(&env, &pool, 2).await;
    let mut template = machine_spec();
    template["bootstrapTimeout"] = json!("6m");
    pool.change_template(template)
        .await
        .expect("change the template");
    // Watched while it rolls: never fewer than two ready instances that are staying, never
    // more than one extra.
    let (fewest_ready, most) = (Cell::new(usize::MAX), Cell::new(0));
    let after = wait::until("every instance replaced", TIMEOUT, || {
        let (pool, before, fewest_ready, most) = (&pool, &before, &fewest_ready, &most);
        async move {
            let instances = pool.instances().await.map_err(|e| e.to_string())?;
            let machines = pool
                .machines()
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            let staying: Vec<&KindMachine> = instances
                .iter()
                .filter(|km| {
                    km.metadata.deletion_timestamp.is_none()
                        && !machines.iter().any(|m| {
                            m.name_any() == km.name_any() && m.metadata.deletion_timestamp.is_some()
                        })
                })
                .collect();
            let ready = staying.iter().filter(|km| km.provisioned()).count();
            fewest_ready.set(fewest_ready.get().min(ready));
            most.set(most.get().max(staying.len()));
            let names: Vec<String> = instances.iter().map(ResourceExt::name_any).collect();
            let new = instances.len() == 2
                && instances
                    .iter()
                    .all(|km| km.spec.bootstrap_timeout == "6m" && km.provisioned())
                && names.iter().all(|n| !before.contains(n));
            if new {
                Ok(names)
            } else {
                Err(format!("{names:?}"))
            }
        }
    })
    .await;
    let (fewest_ready, most) = (fewest_ready.get(), most.get());
    assert!(fewest_ready >= 2, "ready instances fell to {fewest_ready}");
    assert!(most <= 3, "{most} instances at once");
    assert_eq!(settled(&env, &pool, 2).await, after);
    pool.delete(TIMEOUT).await.expect("delete the pool");
    env.core.delete().await.expect("delete the cluster");
}

#[tokio::test]
async fn instances_spread_over_the_failure_domains() {
    let env = env(json!({"failureDomains": [{"name": "fd1"}, {"name": "fd2"}]})).await;
    let pool = env.pool(4, json!({"template": machine_spec()})).await;
    let four = settled(&env, &pool, 4).await;
    let mut per_domain = std::collections::BTreeMap::<String, usize>::new();
    for name in &four {
        let km: KindMachine = kube::Api::namespaced(env.core.client.clone(), &env.core.namespace)
            .get(name)
            .await
            .expect("instance");
        let domain = km.status.and_then(|s| s.failure_domain).expect("placed");
        let label = std::process::Command::new("docker")
            .args([
                "inspect",
                "--format",
                &format!(
                    "{{{{index .Config.Labels \"{}\"}}}}",
                    capkind::docker::labels::FAILURE_DOMAIN
                ),
                &env.container_of(name),
            ])
            .output()
            .expect("docker inspect");
        assert_eq!(
            String::from_utf8_lossy(&label.stdout).trim(),
            domain,
            "{name}"
        );
        *per_domain.entry(domain).or_default() += 1;
    }
    assert_eq!(per_domain, [("fd1".into(), 2), ("fd2".into(), 2)].into());
    pool.delete(TIMEOUT).await.expect("delete the pool");
    env.core.delete().await.expect("delete the cluster");
}

#[tokio::test]
async fn the_manager_killed_while_a_pool_scales_leaves_no_duplicate_or_orphan() {
    let mut env = env(json!({})).await;
    let seed: u64 = std::env::var("CAPKIND_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_nanos() as u64
        });
    println!("CAPKIND_E2E_SEED={seed}");
    let mut state = seed | 1;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let pool = env.pool(0, json!({"template": machine_spec()})).await;
    settled(&env, &pool, 0).await;
    let (client, ns) = (env.core.client.clone(), env.core.namespace.clone());
    let mut seen = BTreeSet::new();
    for replicas in [6, 2, 4] {
        pool.scale(replicas).await.expect("scale");
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(200 + next(2500))).await;
            env.manager.take().expect("manager").kill();
            tokio::time::sleep(Duration::from_millis(next(500))).await;
            env.manager = Some(Manager::start(client.clone(), &ns).await);
        }
        let names = settled(&env, &pool, replicas as usize).await;
        seen.extend(names);
    }
    // Every container ever made belongs to an instance the pool made: the instances named by
    // the pool's history, one container each (docker refuses a second container of a name, so
    // a duplicate would show as an instance without a container or an extra one).
    assert!(
        env.containers()
            .iter()
            .all(|(c, _)| seen.iter().any(|n| env.container_of(n) == *c))
    );
    pool.delete(TIMEOUT).await.expect("delete the pool");
    assert!(env.containers().is_empty(), "{:?}", env.containers());
    env.core.delete().await.expect("delete the cluster");
}
