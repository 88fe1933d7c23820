//! Cluster API core's MachinePool controller, played by the tests: a MachinePool (with core's
//! finalizer) and its KindMachinePool, and a task that does what core does with the pool's
//! instances while the test runs: a Machine for every instance KindMachine (MachinePool
//! Machines: named after the instance, owned by the MachinePool, without bootstrap data, the
//! Machine then made the instance's controller as core's Machine controller does), the
//! deletion of a deleted Machine's instance before the Machine goes, and the pool's provider
//! IDs copied to the MachinePool.

use std::time::Duration;

use capkind_api::capi::{MACHINE_POOL_NAME_LABEL, Machine, MachinePool, Version};
use capkind_api::v1beta2::{KindMachine, KindMachinePool};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::core::{CoreCluster, MACHINE_FINALIZER};

/// Core's finalizer on MachinePools.
pub const MACHINE_POOL_FINALIZER: &str = "machinepool.cluster.x-k8s.io";

/// One MachinePool as core sees it, with core's controller for it running.
pub struct CorePool {
    /// The management cluster.
    pub client: Client,
    /// The namespace.
    pub namespace: String,
    /// The cluster's name.
    pub cluster: String,
    /// The MachinePool's (and KindMachinePool's) name.
    pub name: String,
    capi: Version,
    core: JoinHandle<()>,
}

impl CoreCluster {
    /// A MachinePool `<cluster>-<suffix>` of `replicas` for Kubernetes `version`, whose
    /// bootstrap Secret holds `bootstrap` cloud-config, and its KindMachinePool with `spec`;
    /// core's MachinePool controller runs for it until the returned pool is dropped.
    pub async fn add_pool(
        &self,
        suffix: &str,
        replicas: i32,
        version: &str,
        bootstrap: &str,
        spec: Value,
    ) -> Result<CorePool, kube::Error> {
        let name = format!("{}-{suffix}", self.name);
        let (client, ns, capi) = (&self.client, &self.namespace, self.capi);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-data"), "labels": {"cluster.x-k8s.io/cluster-name": self.name}},
            "type": "cluster.x-k8s.io/secret",
            "stringData": {"value": bootstrap, "format": "cloud-config"}
        }))
        .expect("Secret");
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await?;
        let mp: MachinePool = serde_json::from_value(json!({
            "apiVersion": capi.api_version(), "kind": "MachinePool",
            "metadata": {"name": name, "namespace": ns, "finalizers": [MACHINE_POOL_FINALIZER],
                         "labels": {"cluster.x-k8s.io/cluster-name": self.name}},
            "spec": {"clusterName": self.name, "replicas": replicas,
                     "template": {"spec": {
                         "clusterName": self.name, "version": version,
                         "bootstrap": {"dataSecretName": format!("{name}-data")},
                         "infrastructureRef": crate::capi::reference(capi, "KindMachinePool", &name, ns)}}}
        }))
        .expect("MachinePool");
        let mp = pools(client, ns, capi)
            .create(&PostParams::default(), &mp)
            .await?;
        let owner = crate::capi::owner(
            capi,
            MachinePool::KIND,
            &name,
            &mp.uid().unwrap_or_default(),
            true,
        );
        let kmp: KindMachinePool = serde_json::from_value(json!({
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "KindMachinePool",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner],
                         "labels": {"cluster.x-k8s.io/cluster-name": self.name}},
            "spec": spec
        }))
        .expect("KindMachinePool");
        Api::<KindMachinePool>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &kmp)
            .await?;
        let core = tokio::spawn(run_core(
            client.clone(),
            ns.clone(),
            self.name.clone(),
            name.clone(),
            capi,
        ));
        Ok(CorePool {
            client: client.clone(),
            namespace: ns.clone(),
            cluster: self.name.clone(),
            name,
            capi,
            core,
        })
    }
}

fn pools(client: &Client, ns: &str, capi: Version) -> Api<MachinePool> {
    Api::namespaced_with(client.clone(), ns, &MachinePool::api_resource(capi))
}

impl CorePool {
    /// The MachinePool.
    pub fn machine_pools(&self) -> Api<MachinePool> {
        pools(&self.client, &self.namespace, self.capi)
    }

    /// The KindMachinePools of the namespace.
    pub fn kind_pools(&self) -> Api<KindMachinePool> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The Machines of the namespace.
    pub fn machines(&self) -> Api<Machine> {
        crate::capi::machines(&self.client, &self.namespace, self.capi)
    }

    /// The pool's instance KindMachines, by name.
    pub async fn instances(&self) -> Result<Vec<KindMachine>, kube::Error> {
        let lp = ListParams::default().labels(&format!("{MACHINE_POOL_NAME_LABEL}={}", self.name));
        let mut kms = Api::<KindMachine>::namespaced(self.client.clone(), &self.namespace)
            .list(&lp)
            .await?
            .items;
        kms.sort_by_key(ResourceExt::name_any);
        Ok(kms)
    }

    /// Sets the MachinePool's replicas.
    pub async fn scale(&self, replicas: i32) -> Result<(), kube::Error> {
        self.machine_pools()
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .map(|_| ())
    }

    /// Puts core's delete annotation on an instance's Machine, as the cluster autoscaler does.
    pub async fn mark_for_deletion(&self, machine: &str) -> Result<(), kube::Error> {
        self.machines()
            .patch(
                machine,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations":
                    {capkind_api::capi::DELETE_MACHINE_ANNOTATION: "yes"}}})),
            )
            .await
            .map(|_| ())
    }

    /// Changes the KindMachinePool's instance template (a merge patch of `spec.template`).
    pub async fn change_template(&self, template: Value) -> Result<(), kube::Error> {
        self.kind_pools()
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"template": template}})),
            )
            .await
            .map(|_| ())
    }

    /// Deletes the pool the way core does: the MachinePool is marked deleted, its
    /// KindMachinePool is deleted and waited for, then the MachinePool goes.
    pub async fn delete(self, timeout: Duration) -> Result<(), kube::Error> {
        let mps = self.machine_pools();
        mps.delete(&self.name, &DeleteParams::default()).await?;
        let kmps = self.kind_pools();
        kmps.delete(&self.name, &DeleteParams::default()).await?;
        crate::wait::deleted(&kmps, &self.name, timeout).await;
        mps.patch(
            &self.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await?;
        crate::wait::deleted(&mps, &self.name, timeout).await;
        Ok(())
    }
}

impl Drop for CorePool {
    fn drop(&mut self) {
        self.core.abort();
    }
}

/// Core's MachinePool and Machine controllers for one pool, every 200 ms until it is gone.
async fn run_core(client: Client, ns: String, cluster: String, name: String, capi: Version) {
    loop {
        match core_once(&client, &ns, &cluster, &name, capi).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => eprintln!("core stand-in for MachinePool {name}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One pass; false once the MachinePool is gone.
async fn core_once(
    client: &Client,
    ns: &str,
    cluster: &str,
    name: &str,
    capi: Version,
) -> Result<bool, kube::Error> {
    let Some(mp) = pools(client, ns, capi).get_opt(name).await? else {
        return Ok(false);
    };
    let lp = ListParams::default().labels(&format!("{MACHINE_POOL_NAME_LABEL}={name}"));
    let kms_api = Api::<KindMachine>::namespaced(client.clone(), ns);
    let machines_api = crate::capi::machines(client, ns, capi);
    let kms = kms_api.list(&lp).await?.items;
    let machines = machines_api.list(&lp).await?.items;
    // Every instance gets its Machine, which then becomes the instance's controller.
    for km in &kms {
        let km_name = km.name_any();
        let machine = match machines.iter().find(|m| m.name_any() == km_name) {
            Some(m) => m.clone(),
            None if km.metadata.deletion_timestamp.is_none() => {
                let machine: Machine = serde_json::from_value(json!({
                    "apiVersion": capi.api_version(), "kind": "Machine",
                    "metadata": {"name": km_name, "namespace": ns, "finalizers": [MACHINE_FINALIZER],
                                 "labels": {"cluster.x-k8s.io/cluster-name": cluster,
                                            MACHINE_POOL_NAME_LABEL: name},
                                 "ownerReferences": [crate::capi::owner(capi, MachinePool::KIND, name,
                                                                       &mp.uid().unwrap_or_default(), true)]},
                    "spec": {"clusterName": cluster, "bootstrap": {"dataSecretName": ""},
                             "infrastructureRef": crate::capi::reference(capi, "KindMachine", &km_name, ns)}
                }))
                .expect("Machine");
                match machines_api.create(&PostParams::default(), &machine).await {
                    Ok(m) => m,
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(e),
                }
            }
            None => continue,
        };
        let owned = km
            .owner_references()
            .iter()
            .any(|o| o.kind == "Machine" && Some(&o.uid) == machine.uid().as_ref());
        if !owned && km.metadata.deletion_timestamp.is_none() {
            let mut owners: Vec<Value> = km
                .owner_references()
                .iter()
                .map(|o| serde_json::to_value(o).expect("owner"))
                .collect();
            owners.push(crate::capi::owner(
                capi,
                Machine::KIND,
                &km_name,
                &machine.uid().unwrap_or_default(),
                true,
            ));
            kms_api
                .patch(
                    &km_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"ownerReferences": owners}})),
                )
                .await?;
        }
    }
    // A deleted Machine: its instance goes first (core drains the node, then deletes the
    // infrastructure), then the Machine. A Machine whose instance is gone goes too.
    for m in &machines {
        let m_name = m.name_any();
        let km = kms.iter().find(|km| km.name_any() == m_name);
        if m.metadata.deletion_timestamp.is_none() {
            if km.is_none() {
                machines_api
                    .delete(&m_name, &DeleteParams::default())
                    .await?;
            }
            continue;
        }
        match km {
            Some(km) if km.metadata.deletion_timestamp.is_none() => {
                kms_api.delete(&m_name, &DeleteParams::default()).await?;
            }
            Some(_) => {}
            None => {
                machines_api
                    .patch(
                        &m_name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await?;
            }
        }
    }
    // The provider IDs, as core copies them.
    if let Some(kmp) = Api::<KindMachinePool>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        && kmp.spec.provider_id_list != mp.spec.provider_id_list
    {
        pools(client, ns, capi)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"providerIDList": kmp.spec.provider_id_list}})),
            )
            .await?;
    }
    Ok(true)
}
