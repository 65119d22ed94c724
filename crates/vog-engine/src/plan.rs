//! The order of work of a scoring pass, chosen from a memory budget.
//!
//! VoG needs every example's gradient at every checkpoint. Two orders keep memory independent of
//! the number of examples:
//!
//! - **resident**: all K checkpoints stay loaded and batches stream through them; an example is
//!   finished after its batch, so the pass holds one batch (plus the read-ahead queue).
//! - **chunked**: when the checkpoints do not fit the budget together, examples are taken in
//!   chunks as large as the budget allows; each checkpoint is loaded once per chunk and the
//!   chunk's running statistics wait in memory until the last checkpoint has been through it.
//!
//! Both give the same numbers: every batch sees the checkpoints in the same order.
//!
//! The estimates are deliberately simple and documented: a loaded checkpoint takes
//! [`MODEL_FACTOR`] × its file size (weights, plus the backend's own copies and graph), an
//! example in flight takes its running statistics (16 bytes per element and window segment, per
//! target), its input and one gradient (4 bytes per value each) and its logits, and up to two
//! gradients per checkpoint wait for the statistics worker; a quarter of the budget is left for
//! activations and the allocator.

use std::path::PathBuf;

use vog_core::{ChannelReduce, VogAccumulator, Window};

use crate::config::Config;
use crate::{Error, Result};

/// Memory a loaded checkpoint is assumed to take, as a multiple of its file size.
pub const MODEL_FACTOR: u64 = 2;
/// Batches read and decoded ahead of the backend.
pub(crate) const READ_AHEAD: usize = 2;
/// Values per batch the automatic batch size aims at for flat (vector) examples: one MiB of `f32`
/// input.
const AUTO_VALUES: usize = 1 << 18;
/// And for examples with spatial axes (`[C, H, W]`, `[T, D]`, …), whose activations are many times
/// the input: at most [`AUTO_SPATIAL_BATCH`] examples, fewer when that is more than this many
/// input values (large images).
const AUTO_VALUES_SPATIAL: usize = 1 << 18;
/// Convolutional networks on small images run best at about 64 examples per call with ONNX
/// Runtime and libtorch here (MNIST CNN: 1.75× and 1.19× PyTorch's best at 64, 1.29× and 0.82× at
/// 256; ResNet-18 on 32×32×3: 0.93× and 0.92× at 16, 1.25× and 1.22× at 64; docs/PERFORMANCE.md).
const AUTO_SPATIAL_BATCH: usize = 64;
/// Classes assumed when the model does not say (for logits' memory).
const ASSUMED_CLASSES: usize = 1000;

pub use vog_results::{WorkOrder, WorkSummary};

/// Batch size and work order of one pass.
#[derive(Debug, Clone)]
pub struct WorkPlan {
    /// Examples per backend call.
    pub batch: usize,
    /// Resident or chunked.
    pub order: WorkOrder,
    /// Batches per chunk (1 when resident).
    pub chunk_batches: usize,
    /// The budget, when given.
    pub budget: Option<u64>,
    /// Estimated peak of the plan, in bytes.
    pub estimate: u64,
}

/// The automatic batch size for examples shaped `row_shape`.
pub fn auto_batch(row_shape: &[usize]) -> usize {
    let row_len: usize = row_shape.iter().product();
    let spatial = row_shape.iter().filter(|&&d| d > 1).count() > 1;
    let b = if spatial {
        (AUTO_VALUES_SPATIAL / row_len.max(1)).clamp(8, AUTO_SPATIAL_BATCH)
    } else {
        (AUTO_VALUES / row_len.max(1)).clamp(8, 512)
    };
    1 << (usize::BITS - 1 - b.leading_zeros())
}

impl WorkPlan {
    /// Plans a pass over checkpoints `paths` for examples shaped `input_shape` (as the model takes
    /// them), `windows` (all targets') and the model's `num_classes` when known; `preferred` is
    /// the backend's own batch size ([`vog_core::Model::preferred_batch`]), which stands in for
    /// the automatic one.
    pub fn new(
        config: &Config,
        paths: &[PathBuf],
        input_shape: &[usize],
        windows: &[Window],
        k: usize,
        (num_classes, preferred): (Option<usize>, Option<usize>),
    ) -> Result<Self> {
        let budget = config.backend.memory.map(|b| b.0);
        let sizes: Vec<u64> = paths
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .map(|m| m.len())
                    .map_err(|e| Error::io(p, e))
            })
            .collect::<Result<_>>()?;
        let models_all: u64 = sizes.iter().sum::<u64>() * MODEL_FACTOR;
        let model_max: u64 = sizes.iter().copied().max().unwrap_or(0) * MODEL_FACTOR;
        let classes = num_classes.unwrap_or(ASSUMED_CLASSES);
        // An axis the shape does not settle fails later, with the gradient's shape; the estimate
        // assumes no reduction (the larger footprint).
        let channels = config
            .scoring
            .channel_reduce(input_shape)
            .unwrap_or(ChannelReduce::None);
        let per_row = per_row_bytes(input_shape, windows, k, classes, channels)?;
        let usable = budget.map(|b| b / 4 * 3);
        let mut batch = config
            .backend
            .batch_size
            .or(preferred.filter(|&b| b > 0))
            .unwrap_or_else(|| auto_batch(input_shape));
        if let (None, Some(u)) = (config.backend.batch_size, usable) {
            // The automatic size also fits the budget with the largest checkpoint loaded.
            let room = u.saturating_sub(model_max) / (per_row * (1 + READ_AHEAD as u64)).max(1);
            batch = batch.min(room.max(1) as usize);
            batch = 1 << (usize::BITS - 1 - batch.leading_zeros());
        }
        // Gradients queued for the statistics worker: up to two per checkpoint.
        let queued = (2 * k * batch * input_shape.iter().product::<usize>() * 4) as u64;
        let in_flight = |rows: usize| rows as u64 * per_row;
        let resident = models_all + in_flight(batch * (1 + READ_AHEAD)) + queued;
        let usable = match usable {
            Some(u) if resident > u => u,
            _ => {
                return Ok(WorkPlan {
                    batch,
                    order: WorkOrder::Resident,
                    chunk_batches: 1,
                    budget,
                    estimate: resident,
                })
            }
        };
        let room = usable.saturating_sub(model_max + in_flight(batch * READ_AHEAD) + queued);
        let chunk_batches = (room / in_flight(batch).max(1)) as usize;
        if chunk_batches == 0 {
            let need = model_max + in_flight(batch * (1 + READ_AHEAD)) + queued;
            return Err(Error::Config(format!(
                "`backend.memory = {}` is too small: one checkpoint (~{}) and one batch of {batch} \
                 examples in flight (~{}) need about {} with a quarter kept for activations; raise \
                 the budget or lower backend.batch_size",
                crate::config::ByteSize(budget.expect("a budget")),
                crate::config::ByteSize(model_max),
                crate::config::ByteSize(in_flight(batch * (1 + READ_AHEAD))),
                crate::config::ByteSize(need / 3 * 4)
            )));
        }
        Ok(WorkPlan {
            batch,
            order: WorkOrder::Chunked,
            chunk_batches,
            budget,
            estimate: model_max + in_flight(batch * (chunk_batches + READ_AHEAD)) + queued,
        })
    }

    /// What `run.json` records.
    pub fn summary(&self) -> WorkSummary {
        WorkSummary {
            order: self.order,
            chunk_rows: self.chunk_batches * self.batch,
            memory_budget: self.budget,
            estimated_bytes: self.estimate,
        }
    }
}

/// Bytes one example in flight takes: running statistics, input, gradient, logits.
fn per_row_bytes(
    input_shape: &[usize],
    windows: &[Window],
    k: usize,
    classes: usize,
    channels: ChannelReduce,
) -> Result<u64> {
    let row_len: usize = input_shape.iter().product();
    let acc = VogAccumulator::new(input_shape, windows, k.max(2), channels)?;
    Ok((acc.bytes_per_row() + 8 * row_len + 4 * k * classes) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    fn windows() -> Vec<Window> {
        vec![Window {
            name: "all".into(),
            start: 0,
            end: 4,
        }]
    }

    #[test]
    fn automatic_batch_is_a_power_of_two_near_a_mebibyte() {
        assert_eq!(auto_batch(&[784]), 256);
        assert_eq!(auto_batch(&[1, 28, 28]), 64);
        assert_eq!(auto_batch(&[3, 32, 32]), 64);
        assert_eq!(auto_batch(&[3, 64, 64]), 16);
        assert_eq!(auto_batch(&[3, 224, 224]), 8);
        assert_eq!(auto_batch(&[20]), 512);
    }

    #[test]
    fn budget_chooses_resident_or_chunked() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..4)
            .map(|i| {
                let p = dir.path().join(format!("{i}.bin"));
                std::fs::write(&p, vec![0u8; 10 << 20]).unwrap();
                p
            })
            .collect();
        let mut c = Config::default();
        c.backend.batch_size = Some(64);
        let shape = [784];
        // No budget: resident.
        let p = WorkPlan::new(&c, &paths, &shape, &windows(), 4, (None, None)).unwrap();
        assert_eq!((p.order, p.chunk_batches), (WorkOrder::Resident, 1));
        // Plenty: resident.
        c.backend.memory = Some("1GiB".parse().unwrap());
        let p = WorkPlan::new(&c, &paths, &shape, &windows(), 4, (None, None)).unwrap();
        assert_eq!(p.order, WorkOrder::Resident);
        // 4 × 20 MiB of models do not fit 64 MiB: chunks, within the budget.
        c.backend.memory = Some(ByteSize(64 << 20));
        let p = WorkPlan::new(&c, &paths, &shape, &windows(), 4, (None, None)).unwrap();
        assert_eq!(p.order, WorkOrder::Chunked);
        assert!(p.chunk_batches >= 1);
        assert!(p.estimate <= 48 << 20, "{}", p.estimate);
        // Too small for one checkpoint.
        c.backend.memory = Some(ByteSize(16 << 20));
        let err = WorkPlan::new(&c, &paths, &shape, &windows(), 4, (None, None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("backend.memory") && err.contains("too small"),
            "{err}"
        );
        // The automatic batch shrinks to fit.
        c.backend.batch_size = None;
        c.backend.memory = Some(ByteSize(48 << 20));
        let p = WorkPlan::new(&c, &paths, &shape, &windows(), 4, (None, None)).unwrap();
        assert!(p.batch < 256 && p.batch.is_power_of_two(), "{}", p.batch);
    }

    #[test]
    fn a_backends_preferred_batch_stands_in_for_the_automatic_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.bin");
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        let paths = vec![p];
        let shape = [784];
        let mut c = Config::default();
        let plan = |c: &Config, preferred| {
            WorkPlan::new(c, &paths, &shape, &windows(), 4, (Some(10), preferred))
                .unwrap()
                .batch
        };
        assert_eq!(plan(&c, None), auto_batch(&shape));
        assert_eq!(plan(&c, Some(512)), 512);
        assert_eq!(plan(&c, Some(0)), auto_batch(&shape));
        // A budget still lowers it; a configured batch size wins over it.
        c.backend.memory = Some(ByteSize(24 << 20));
        let lowered = plan(&c, Some(512));
        assert!(lowered < 512 && lowered.is_power_of_two(), "{lowered}");
        c.backend.memory = None;
        c.backend.batch_size = Some(32);
        assert_eq!(plan(&c, Some(512)), 32);
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!("4GiB".parse::<ByteSize>().unwrap().0, 4 << 30);
        assert_eq!("512 MiB".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert_eq!("2G".parse::<ByteSize>().unwrap().0, 2_000_000_000);
        assert_eq!("1.5KiB".parse::<ByteSize>().unwrap().0, 1536);
        assert_eq!("1500".parse::<ByteSize>().unwrap().0, 1500);
        assert!("4 parsecs".parse::<ByteSize>().is_err());
        assert!("GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(4 << 30).to_string(), "4GiB");
    }
}
