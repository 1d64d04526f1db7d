//! The Attune trainer: fine-tunes BERT-family text classifiers on candle (work in progress).
