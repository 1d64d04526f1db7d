//! Choosing the compute device: `--device auto|cpu|cuda|cuda:N`.

use candle_core::{Device, DeviceLocation};

use crate::error::{Error, Result};

/// The device `spec` names. `auto` is the first GPU when this binary was built with the `cuda`
/// feature and a GPU is usable, else the CPU (with a warning when the GPU was expected).
pub fn select_device(spec: &str) -> Result<Device> {
    let cuda = |ordinal: usize| {
        Device::new_cuda(ordinal).map_err(|e| {
            Error::Config(format!(
                "--device {spec}: {e} (needs a binary built with the cuda feature and a visible \
                 GPU; use --device cpu or auto)"
            ))
        })
    };
    match spec {
        "auto" if candle_core::utils::cuda_is_available() => Ok(Device::new_cuda(0)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "built with cuda but no usable GPU: using the CPU");
                Device::Cpu
            })),
        "auto" | "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        _ => match spec.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda(n),
            _ => Err(Error::Config(format!(
                "--device {spec}: expected auto, cpu, cuda or cuda:N"
            ))),
        },
    }
}

/// `cpu`, `cuda:N` or `metal:N`: how progress events and logs name a device.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_choose_the_cpu_without_a_gpu_and_bad_names_fail() {
        assert!(select_device("cpu").unwrap().is_cpu());
        if !candle_core::utils::cuda_is_available() {
            assert!(select_device("auto").unwrap().is_cpu());
            let e = select_device("cuda:0").unwrap_err().to_string();
            assert!(e.contains("--device cuda:0"), "{e}");
        }
        for bad in ["gpu", "cuda:x", "cuda:-1", ""] {
            let e = select_device(bad).unwrap_err().to_string();
            assert!(
                e.contains("expected auto, cpu, cuda or cuda:N"),
                "{bad}: {e}"
            );
        }
        assert_eq!(device_name(&Device::Cpu), "cpu");
    }
}
