//! FineTuneJobs that do not deserialize (stored under an older schema, edited past it): reported
//! once per version as a Warning Event and skipped, so they never stop the controller.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::events::{Event, EventType};

use crate::context::Context;

/// Counts the object, logs it and publishes a Warning Event on it.
pub fn report(context: &Context, invalid: &InvalidObject) {
    context.metrics.invalid_objects.inc();
    let metadata = &invalid.metadata;
    tracing::warn!(
        namespace = metadata.namespace.as_deref().unwrap_or_default(),
        job = metadata.name.as_deref().unwrap_or_default(),
        error = %invalid.error,
        "skipping a FineTuneJob that does not deserialize"
    );
    let reference = ObjectReference {
        api_version: Some("attune.dev/v1alpha1".to_owned()),
        kind: Some("FineTuneJob".to_owned()),
        name: metadata.name.clone(),
        namespace: metadata.namespace.clone(),
        uid: metadata.uid.clone(),
        resource_version: metadata.resource_version.clone(),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "InvalidObject".to_owned(),
        note: Some(format!(
            "the operator cannot read this FineTuneJob and skips it until it changes: {}",
            invalid.error
        )),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    context.publish(event, vec![reference]);
}
