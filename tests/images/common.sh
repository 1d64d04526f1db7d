# Sourced by tests/images/build and tests/images/check: where the images are and what they are.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/attune/cargo-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
IMAGES_DIR=${ATTUNE_IMAGES_DIR:-$CARGO_TARGET_DIR/images}
IMAGES=(attune-operator attune-trainer)

step() { printf '\n==> images: %s\n' "$*"; }
die() { echo "images: FAILED: $*" >&2; exit 1; }

# The org.opencontainers.image.description label (the Dockerfiles carry the same words).
description() {
  case $1 in
    attune-operator) echo "Attune's Kubernetes operator: runs multi-tenant fine-tuning of HuggingFace models" ;;
    attune-trainer) echo "Attune's trainer: fine-tunes HuggingFace encoder models with candle (CPU build)" ;;
  esac
}
