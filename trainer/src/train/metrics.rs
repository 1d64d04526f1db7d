//! Evaluation metrics: loss, accuracy, macro-F1 (as scikit-learn's `f1_score(average="macro")`
//! over the classes present in targets or predictions).

use std::collections::BTreeSet;

/// Metrics of one evaluation pass.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalMetrics {
    pub loss: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub samples: usize,
}

/// Accuracy and macro-F1 of predictions against targets.
pub fn accuracy_f1(targets: &[u32], predictions: &[u32]) -> (f64, f64) {
    if targets.is_empty() {
        return (0.0, 0.0);
    }
    let correct = targets
        .iter()
        .zip(predictions)
        .filter(|(t, p)| t == p)
        .count();
    let classes: BTreeSet<u32> = targets.iter().chain(predictions).copied().collect();
    let mut f1_sum = 0.0;
    for &c in &classes {
        let tp = targets
            .iter()
            .zip(predictions)
            .filter(|&(&t, &p)| t == c && p == c)
            .count() as f64;
        let fp = predictions.iter().filter(|&&p| p == c).count() as f64 - tp;
        let fn_ = targets.iter().filter(|&&t| t == c).count() as f64 - tp;
        let denom = 2.0 * tp + fp + fn_;
        f1_sum += if denom > 0.0 { 2.0 * tp / denom } else { 0.0 };
    }
    (
        correct as f64 / targets.len() as f64,
        f1_sum / classes.len() as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_matches_sklearn() {
        // sklearn: f1_score([0,1,2,0,1,2],[0,2,1,0,0,1],average="macro") == 0.26666...
        let (acc, f1) = accuracy_f1(&[0, 1, 2, 0, 1, 2], &[0, 2, 1, 0, 0, 1]);
        assert!((acc - 2.0 / 6.0).abs() < 1e-12);
        assert!((f1 - 0.266_666_666_666_666_6).abs() < 1e-9, "{f1}");
    }
}
