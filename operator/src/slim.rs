//! What the watch caches keep of each object: everything the reconcilers and admission read,
//! less what none of them does. With a thousand jobs the caches hold a thousand FineTuneJobs,
//! trainer Jobs and pods each; their `managedFields`, and the volumes, environment and
//! arguments of the pod specs, were most of the operator's memory (issue 10's footprint
//! benchmark: 240 MiB before, see README "Benchmarks").

use attune_crds::CachedModel;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::ResourceExt;
use kube::core::{DeserializeGuard, PartialObjectMeta};

/// Drops what nothing reads from a cached object.
pub trait Slim {
    /// Clears the unread fields in place.
    fn slim(&mut self);
}

/// What a pod spec keeps: the containers' names and resources (GPUs held), the node and the
/// priority; not the volumes, environment, commands or security settings.
fn slim_spec(spec: &mut PodSpec) {
    spec.volumes = None;
    spec.affinity = None;
    spec.tolerations = None;
    spec.init_containers = None;
    for container in &mut spec.containers {
        *container = Container {
            name: std::mem::take(&mut container.name),
            resources: container.resources.take(),
            ..Container::default()
        };
    }
}

impl Slim for Pod {
    fn slim(&mut self) {
        self.managed_fields_mut().clear();
        if let Some(spec) = &mut self.spec {
            slim_spec(spec);
        }
        // Phase, conditions (the scheduler's verdict) and each container's state (running
        // since, waiting reason, exit code and termination message) are what is read.
        if let Some(status) = &mut self.status {
            status.host_ip = None;
            status.host_ips = None;
            status.pod_ip = None;
            status.pod_ips = None;
            status.init_container_statuses = None;
            status.ephemeral_container_statuses = None;
            for container in status.container_statuses.iter_mut().flatten() {
                container.image = String::new();
                container.image_id = String::new();
                container.container_id = None;
                container.last_state = None;
                container.volume_mounts = None;
                container.allocated_resources = None;
                container.resources = None;
                container.user = None;
            }
        }
    }
}

impl Slim for Job {
    fn slim(&mut self) {
        self.managed_fields_mut().clear();
        if let Some(spec) = &mut self.spec {
            spec.template.metadata = None;
            spec.pod_failure_policy = None;
            spec.selector = None;
            if let Some(pod) = &mut spec.template.spec {
                slim_spec(pod);
            }
        }
        if let Some(status) = &mut self.status {
            status.uncounted_terminated_pods = None;
        }
    }
}

impl<K: kube::Resource> Slim for DeserializeGuard<K> {
    fn slim(&mut self) {
        if let Ok(object) = &mut self.0 {
            object.meta_mut().managed_fields = None;
        }
    }
}

impl Slim for CachedModel {
    fn slim(&mut self) {
        self.managed_fields_mut().clear();
    }
}

impl Slim for PartialObjectMeta<Namespace> {
    fn slim(&mut self) {
        self.managed_fields_mut().clear();
    }
}

impl Slim for PriorityClass {
    fn slim(&mut self) {
        self.managed_fields_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::Slim;
    use crate::tenancy::usage::pod_gpus;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn a_slim_pod_keeps_what_admission_and_status_read() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "p", "annotations": { "attune.dev/job-name": "j" },
                "managedFields": [{ "manager": "kubelet", "operation": "Update" }],
            },
            "spec": {
                "volumes": [{ "name": "v", "emptyDir": {} }],
                "nodeName": "gpu-1",
                "containers": [{
                    "name": "trainer", "image": "t", "args": ["train"],
                    "env": [{ "name": "A", "value": "b" }],
                    "resources": { "limits": { "nvidia.com/gpu": "2" } },
                }],
            },
            "status": { "phase": "Running" },
        }))
        .expect("a Pod");
        pod.slim();
        assert!(pod.metadata.managed_fields.is_none_or(|f| f.is_empty()));
        let spec = pod.spec.as_ref().expect("spec");
        assert!(spec.volumes.is_none());
        assert!(spec.containers[0].env.is_none() && spec.containers[0].args.is_none());
        assert_eq!(pod_gpus(spec), 2);
        assert_eq!(spec.node_name.as_deref(), Some("gpu-1"));
        assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));
        assert!(pod.metadata.annotations.is_some());
    }
}
