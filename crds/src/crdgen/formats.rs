//! Integer formats the API server knows.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;

/// schemars writes `format: uint32` / `uint64` for unsigned integers, which the API server does
/// not know (it warns on every apply); their signed names are the formats Kubernetes documents,
/// and the `minimum: 0` that schemars also writes keeps the values unsigned.
pub(super) fn kubernetes_integer_format(schema: &mut JSONSchemaProps) {
    schema.format = match schema.format.take().as_deref() {
        Some("uint32" | "uint16" | "uint8") => Some("int32".to_owned()),
        Some("uint64" | "uint") => Some("int64".to_owned()),
        other => other.map(str::to_owned),
    };
}
