//! Cluster API core, played by the test suites, the quick start and the benchmark: what core's
//! Cluster, Machine, MachineSet and KubeadmControlPlane controllers do to infrastructure objects,
//! and nothing more. The Cluster and every Machine carry core's finalizers; KindMachines are
//! cloned from a KindMachineTemplate with core's annotations and owned by their Machine; deletion
//! goes in core's order (Machine marked deleted, then its KindMachine, then the Machine goes;
//! the KindCluster only once every machine is gone, then the Cluster).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use capkind_api::capi::{Cluster, Machine, Version};
use capkind_api::v1beta2::{KindCluster, KindMachine, KindMachineTemplate};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Core's finalizer on Clusters.
pub const CLUSTER_FINALIZER: &str = "cluster.cluster.x-k8s.io";
/// Core's finalizer on Machines.
pub const MACHINE_FINALIZER: &str = "machine.cluster.x-k8s.io";

/// How long a deletion may take before the caller fails.
const DELETE_TIMEOUT: Duration = Duration::from_secs(180);

/// One cluster as core sees it.
pub struct CoreCluster {
    /// The management cluster.
    pub client: Client,
    /// The cluster's namespace.
    pub namespace: String,
    /// The Cluster's (and KindCluster's) name.
    pub name: String,
    /// The KindMachineTemplate every machine is cloned from.
    pub template: String,
    /// The version of capkind's API the objects are written in, as a user's manifests or a
    /// ClusterClass may have them: v1beta2, or v1beta1 (converted by the webhook).
    pub infra_version: &'static str,
    /// The version of Cluster and Machine core writes: the newest the API server serves.
    pub capi: Version,
    next: AtomicUsize,
}

/// A Machine's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Made by the control plane provider; labelled `cluster.x-k8s.io/control-plane`.
    ControlPlane,
    /// Made by a MachineDeployment.
    Worker,
}

/// The API of kind `K` at `version` of capkind's API group, across namespaces.
struct InfraApi {
    client: Client,
    resource: ApiResource,
}

impl InfraApi {
    fn within(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &self.resource)
    }
}

fn infra_api<K: kube::Resource<DynamicType = ()>>(client: &Client, version: &str) -> InfraApi {
    let mut resource = ApiResource::erase::<K>(&());
    resource.version = version.to_string();
    resource.api_version = format!("{}/{version}", resource.group);
    InfraApi {
        client: client.clone(),
        resource,
    }
}

/// Creates `object` (its kind `K`) in `version` of capkind's API.
async fn create_infra<K: kube::Resource<DynamicType = ()>>(
    client: &Client,
    version: &str,
    mut object: Value,
) -> Result<(), kube::Error> {
    let api = infra_api::<K>(client, version);
    object["apiVersion"] = json!(api.resource.api_version);
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    api.within(&namespace)
        .create(&PostParams::default(), &object)
        .await
        .map(|_| ())
}

impl CoreCluster {
    /// Creates the Cluster (with core's finalizer), its KindCluster with `kind_spec`, and the
    /// KindMachineTemplate `<name>-machines` with `machine_spec`, both owned by the Cluster;
    /// Cluster API's objects in the newest version the API server serves.
    pub async fn create(
        client: &Client,
        namespace: &str,
        name: &str,
        kind_spec: Value,
        machine_spec: Value,
    ) -> Result<Self, kube::Error> {
        Self::create_in("v1beta2", client, namespace, name, kind_spec, machine_spec).await
    }

    /// [`CoreCluster::create`] with the provider's objects written in `infra_version`.
    pub async fn create_in(
        infra_version: &'static str,
        client: &Client,
        namespace: &str,
        name: &str,
        kind_spec: Value,
        machine_spec: Value,
    ) -> Result<Self, kube::Error> {
        let pp = PostParams::default();
        let capi = crate::capi::served(client).await;
        let cluster = crate::capi::cluster(capi, namespace, name, false, &[CLUSTER_FINALIZER]);
        let cluster = crate::capi::clusters(client, namespace, capi)
            .create(&pp, &cluster)
            .await?;
        let uid = cluster.uid().unwrap_or_default();
        let owned_by_cluster = crate::capi::owner(capi, Cluster::KIND, name, &uid, true);
        let labels = json!({"cluster.x-k8s.io/cluster-name": name});
        create_infra::<KindCluster>(
            client,
            infra_version,
            json!({
                "kind": "KindCluster",
                "metadata": {"name": name, "namespace": namespace, "labels": labels,
                             "ownerReferences": [owned_by_cluster]},
                "spec": kind_spec
            }),
        )
        .await?;
        let template = format!("{name}-machines");
        let mut template_owner = owned_by_cluster.clone();
        template_owner["controller"] = json!(false);
        create_infra::<KindMachineTemplate>(
            client,
            infra_version,
            json!({
                "kind": "KindMachineTemplate",
                "metadata": {"name": template, "namespace": namespace, "labels": labels,
                             "ownerReferences": [template_owner]},
                "spec": {"template": {"spec": machine_spec}}
            }),
        )
        .await?;
        Ok(Self {
            client: client.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            template,
            infra_version,
            capi,
            next: AtomicUsize::new(0),
        })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn clusters(&self) -> Api<Cluster> {
        crate::capi::clusters(&self.client, &self.namespace, self.capi)
    }

    fn machines_api(&self) -> Api<Machine> {
        crate::capi::machines(&self.client, &self.namespace, self.capi)
    }

    /// The KindCluster as it is now.
    pub async fn kind_cluster(&self) -> Result<KindCluster, kube::Error> {
        self.api::<KindCluster>().get(&self.name).await
    }

    /// Waits for the KindCluster to be ready, then does what core does with it: copies its
    /// control-plane endpoint to the Cluster and marks the infrastructure provisioned
    /// (`status.infrastructureReady` in v1beta1, `status.initialization` in v1beta2).
    pub async fn infrastructure_ready(&self, timeout: Duration) -> KindCluster {
        let kc = crate::wait::until("KindCluster ready", timeout, || async {
            let kc = self.kind_cluster().await.map_err(|e| e.to_string())?;
            match (&kc.status, &kc.spec.control_plane_endpoint) {
                (Some(_), Some(_)) if kc.provisioned() => Ok(kc),
                _ => Err(format!("{:?}", kc.status)),
            }
        })
        .await;
        let endpoint = kc.spec.control_plane_endpoint.clone().expect("endpoint");
        self.clusters()
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"controlPlaneEndpoint":
                    {"host": endpoint.host, "port": endpoint.port}}})),
            )
            .await
            .expect("copy the control-plane endpoint to the Cluster");
        crate::fixtures::mark_cluster_at(
            &self.client,
            &self.namespace,
            &self.name,
            self.capi,
            false,
        )
        .await;
        kc
    }

    /// Sets the Cluster's ControlPlaneInitialized condition, as the control plane provider's
    /// first machine coming up makes core do.
    pub async fn control_plane_initialized(&self) {
        crate::fixtures::mark_cluster_at(
            &self.client,
            &self.namespace,
            &self.name,
            self.capi,
            true,
        )
        .await;
    }

    /// Writes the workload cluster's kubeconfig where the control plane provider puts it.
    pub async fn workload_kubeconfig(&self, kubeconfig: &str) -> Result<(), kube::Error> {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("{}-kubeconfig", self.name),
                         "labels": {"cluster.x-k8s.io/cluster-name": self.name}},
            "type": "cluster.x-k8s.io/secret",
            "stringData": {"value": kubeconfig}
        }))
        .expect("Secret");
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .map(|_| ())
    }

    /// A new Machine of `role` with `bootstrap` cloud-config in its bootstrap Secret, and its
    /// KindMachine cloned from the template, as a MachineSet or control plane provider makes
    /// them. Returns the name the three share.
    pub async fn add_machine(&self, role: Role, bootstrap: &str) -> Result<String, kube::Error> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = match role {
            Role::ControlPlane => format!("{}-cp-{n}", self.name),
            Role::Worker => format!("{}-md-{n}", self.name),
        };
        let pp = PostParams::default();
        let mut labels = json!({"cluster.x-k8s.io/cluster-name": self.name});
        match role {
            Role::ControlPlane => labels["cluster.x-k8s.io/control-plane"] = json!(""),
            Role::Worker => {
                labels["cluster.x-k8s.io/deployment-name"] = json!(format!("{}-md", self.name))
            }
        }
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"cluster.x-k8s.io/cluster-name": self.name}},
            "type": "cluster.x-k8s.io/secret",
            "stringData": {"value": bootstrap, "format": "cloud-config"}
        }))
        .expect("Secret");
        self.api::<Secret>().create(&pp, &secret).await?;
        let machine = crate::capi::machine(
            self.capi,
            &self.namespace,
            &self.name,
            &name,
            &labels,
            Some(&name),
            &[MACHINE_FINALIZER],
        );
        let machine = self.machines_api().create(&pp, &machine).await?;
        let uid = machine.uid().unwrap_or_default();
        // Cloned as core clones it: read in the version the objects are written in.
        let template = infra_api::<KindMachineTemplate>(&self.client, self.infra_version)
            .within(&self.namespace)
            .get(&self.template)
            .await?
            .data;
        let mut km_labels = Some(template["spec"]["template"]["metadata"]["labels"].clone())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        for (k, v) in labels.as_object().expect("labels") {
            km_labels[k] = v.clone();
        }
        let km = json!({
            "kind": "KindMachine",
            "metadata": {"name": name, "namespace": self.namespace, "labels": km_labels,
                         "annotations": {"cluster.x-k8s.io/cloned-from-name": self.template,
                                         "cluster.x-k8s.io/cloned-from-groupkind":
                                             "KindMachineTemplate.infrastructure.cluster.x-k8s.io"},
                         "ownerReferences": [crate::capi::owner(self.capi, Machine::KIND, &name, &uid, true)]},
            "spec": template["spec"]["template"]["spec"]
        });
        create_infra::<KindMachine>(&self.client, self.infra_version, km).await?;
        Ok(name)
    }

    /// The names of the cluster's Machines.
    pub async fn machines(&self) -> Result<Vec<String>, kube::Error> {
        let lp =
            ListParams::default().labels(&format!("cluster.x-k8s.io/cluster-name={}", self.name));
        Ok(self
            .machines_api()
            .list(&lp)
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect())
    }

    /// The first half of a Machine's deletion: the Machine is marked deleted (core's finalizer
    /// keeps it); its KindMachine is still there.
    pub async fn start_deleting_machine(&self, name: &str) -> Result<(), kube::Error> {
        ignore_not_found(
            self.machines_api()
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )
    }

    /// The second half: deletes the KindMachine, waits until the provider let it go, removes
    /// the bootstrap Secret, and lets the Machine go.
    pub async fn finish_deleting_machine(&self, name: &str) -> Result<(), kube::Error> {
        let kms = self.api::<KindMachine>();
        ignore_not_found(kms.delete(name, &DeleteParams::default()).await.map(|_| ()))?;
        crate::wait::deleted(&kms, name, DELETE_TIMEOUT).await;
        ignore_not_found(
            self.api::<Secret>()
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
        let machines = self.machines_api();
        ignore_not_found(
            machines
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                )
                .await
                .map(|_| ()),
        )?;
        crate::wait::deleted(&machines, name, DELETE_TIMEOUT).await;
        Ok(())
    }

    /// Deletes a Machine the way core does.
    pub async fn delete_machine(&self, name: &str) -> Result<(), kube::Error> {
        self.start_deleting_machine(name).await?;
        self.finish_deleting_machine(name).await
    }

    /// Deletes the cluster the way core does: the Cluster is marked deleted, then every Machine
    /// goes (in parallel, as MachineSets and the control plane delete them), then the template
    /// and the KindCluster; once the KindCluster is gone the Cluster goes.
    pub async fn delete(&self) -> Result<(), kube::Error> {
        let clusters = self.clusters();
        ignore_not_found(
            clusters
                .delete(&self.name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
        let machines = self.machines().await?;
        let deletions = machines.iter().map(|m| self.delete_machine(m));
        for result in futures::future::join_all(deletions).await {
            result?;
        }
        ignore_not_found(
            self.api::<KindMachineTemplate>()
                .delete(&self.template, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
        let kcs = self.api::<KindCluster>();
        ignore_not_found(
            kcs.delete(&self.name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
        crate::wait::deleted(&kcs, &self.name, DELETE_TIMEOUT).await;
        ignore_not_found(
            self.api::<Secret>()
                .delete(
                    &format!("{}-kubeconfig", self.name),
                    &DeleteParams::default(),
                )
                .await
                .map(|_| ()),
        )?;
        ignore_not_found(
            clusters
                .patch(
                    &self.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                )
                .await
                .map(|_| ()),
        )?;
        crate::wait::deleted(&clusters, &self.name, DELETE_TIMEOUT).await;
        Ok(())
    }
}

fn ignore_not_found(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}

/// Bootstrap data that does what a node needs to count as bootstrapped and nothing else: it
/// writes Cluster API's sentinel file.
pub const TRIVIAL_BOOTSTRAP: &str = "#cloud-config\nruncmd:\n- mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete\n";

/// Bootstrap data for a control-plane node that stands in for kubeadm: a TLS listener on 6443
/// answering like an API server (openssl's s_server, which is in the node image), then the
/// sentinel.
pub const CONTROL_PLANE_BOOTSTRAP: &str = "#cloud-config\nruncmd:\n\
- [sh, -c, 'mkdir -p /etc/capkind-demo && openssl req -x509 -newkey rsa:2048 -nodes -keyout /etc/capkind-demo/k.pem -out /etc/capkind-demo/c.pem -subj /CN=node -days 1 2>/dev/null']\n\
- 'setsid openssl s_server -accept 6443 -cert /etc/capkind-demo/c.pem -key /etc/capkind-demo/k.pem -www >/dev/null 2>&1 < /dev/null &'\n\
- mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete\n";
