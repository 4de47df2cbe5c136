//! Metrics that stay on the device between log points. Each metric is a weighted mean over the
//! interval (`Σ wᵢ xᵢ / Σ wᵢ`: a loss weighted by batch rows, a gradient norm with weight 1), or a
//! value set once (a weight norm computed at log time). [`Metrics::read`] brings every metric back
//! in one read-back and starts a new interval; recording costs no launch. The host forms `wᵢ xᵢ`
//! and sums them in the order they were added, in f32.
//!
//! A long interval folds its values into host partial sums every [`FOLD_AT`] values of a metric
//! (one read-back for all of them, the same sums in the same order): the device values of a
//! metric are each a live buffer, and on lavapipe a step's allocations slow down with the number of
//! live buffers (the full bit-flipping stream, 20,000 steps between logs, ran 72 steps/s against
//! 196 with 2,000).

use dynlab_runtime::{Error, Result, Tensor};
use std::collections::BTreeMap;

/// Device values a metric holds before they are folded into its host partial sums.
pub const FOLD_AT: usize = 256;

/// One metric of the current interval; device values hold one element per replica.
#[derive(Clone)]
enum Entry {
    /// Values `xᵢ` (device tensors of `width` elements) with their weights `wᵢ`, the partial sums
    /// `Σ wᵢ xᵢ` of the values already folded (per replica), and `Σ wᵢ`.
    Mean {
        values: Vec<(Tensor, f32)>,
        folded: Vec<f32>,
        weight: f32,
    },
    /// A device value set at log time (boxed: a tensor handle is large).
    Value(Box<Tensor>),
    /// Host values: one for every replica, or one each.
    Host(Vec<f32>),
    /// A value the host derives at read time, per replica, from a device tensor's elements.
    Derived(Box<Tensor>, Derive),
}

/// How a derived metric is formed from the elements read back, for replica `r`.
type Derive = std::rc::Rc<dyn Fn(&[f32], usize) -> f32>;

/// Device-side accumulators by name (see the module docs).
#[derive(Clone)]
pub struct Metrics {
    entries: BTreeMap<String, Entry>,
    width: usize,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::for_replicas(1)
    }
}

impl Metrics {
    /// Metrics of `replicas` stacked models: every device value holds one element per replica
    /// (1: one model, scalars).
    pub fn for_replicas(replicas: usize) -> Metrics {
        Metrics {
            entries: BTreeMap::new(),
            width: replicas.max(1),
        }
    }

    /// Elements per device value: the number of replicas.
    pub fn replicas(&self) -> usize {
        self.width
    }

    /// `value` as one element per replica, or an error naming the metric.
    fn per_replica(&self, op: &'static str, name: &str, value: &Tensor) -> Result<Tensor> {
        if value.numel() != self.width {
            let expected = match self.width {
                1 => "a scalar".to_string(),
                r => format!("one value per replica [{r}]"),
            };
            return Err(Error::shape(
                op,
                format!("`{name}` of shape {:?}", value.shape()),
                expected,
            ));
        }
        value.reshape(&[self.width as isize])
    }

    /// Adds the device value `value` (a scalar; `[R]` for replicas) with weight `weight` to the
    /// interval mean of `name`.
    pub fn add(&mut self, name: &str, value: &Tensor, weight: f32) -> Result<()> {
        let value = self.per_replica("Metrics::add", name, value)?;
        let width = self.width;
        let entry = self.entries.entry(name.to_string()).or_insert(Entry::Mean {
            values: Vec::new(),
            folded: vec![0.0; width],
            weight: 0.0,
        });
        match entry {
            Entry::Mean {
                values,
                folded,
                weight: w,
            } => {
                values.push((value, weight));
                *w += weight;
                if values.len() >= FOLD_AT {
                    let read =
                        Tensor::read_many(&values.iter().map(|(t, _)| t).collect::<Vec<_>>())?;
                    accumulate(folded, read, values);
                    values.clear();
                }
                Ok(())
            }
            _ => Err(kind_clash(name)),
        }
    }

    /// Sets `name` to the device value `value` (a scalar; `[R]` for replicas) for this interval.
    pub fn set(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let value = self.per_replica("Metrics::set", name, value)?;
        self.entries
            .insert(name.to_string(), Entry::Value(Box::new(value)));
        Ok(())
    }

    /// Sets `name` to `derive(values, r)` for each replica `r`, `values` the elements of `tensor`
    /// read back with the other metrics (so a statistic that needs several device numbers costs
    /// no read of its own).
    pub fn set_derived(
        &mut self,
        name: &str,
        tensor: &Tensor,
        derive: impl Fn(&[f32], usize) -> f32 + 'static,
    ) -> Result<()> {
        let flat = tensor.reshape(&[-1])?;
        let entry = Entry::Derived(Box::new(flat), std::rc::Rc::new(derive));
        self.entries.insert(name.to_string(), entry);
        Ok(())
    }

    /// Sets `name` to a host value for this interval (every replica's).
    pub fn set_host(&mut self, name: &str, value: f32) {
        self.entries
            .insert(name.to_string(), Entry::Host(vec![value]));
    }

    /// Sets `name` to one host value per replica for this interval.
    pub fn set_host_replicas(&mut self, name: &str, values: Vec<f32>) -> Result<()> {
        if values.len() != self.width {
            return Err(Error::shape(
                "Metrics::set_host_replicas",
                format!("`{name}` with {} values", values.len()),
                format!("one per replica ({})", self.width),
            ));
        }
        self.entries.insert(name.to_string(), Entry::Host(values));
        Ok(())
    }

    /// Whether nothing was recorded since the last read.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every metric of the interval (one read-back), and a fresh interval. Metrics of replicas are
    /// read with [`Metrics::read_replicas`].
    pub fn read(&mut self) -> Result<BTreeMap<String, f32>> {
        if self.width != 1 {
            return Err(Error::value(
                "Metrics::read",
                format!("metrics of {} replicas", self.width),
                "one model (read replicas with Metrics::read_replicas)",
            ));
        }
        Ok(self.read_replicas()?.pop().unwrap_or_default())
    }

    /// Every metric of the interval for each replica (one read-back), and a fresh interval.
    pub fn read_replicas(&mut self) -> Result<Vec<BTreeMap<String, f32>>> {
        let entries = std::mem::take(&mut self.entries);
        let device: Vec<&Tensor> = entries
            .values()
            .flat_map(|e| match e {
                Entry::Mean { values, .. } => values.iter().map(|(t, _)| t).collect(),
                Entry::Value(t) | Entry::Derived(t, _) => vec![t.as_ref()],
                Entry::Host(_) => vec![],
            })
            .collect();
        let mut host = Tensor::read_many(&device)?.into_iter();
        let mut out = vec![BTreeMap::new(); self.width];
        for (name, entry) in &entries {
            let values: Vec<f32> = match entry {
                Entry::Mean {
                    values,
                    folded,
                    weight,
                } => {
                    let mut sums = folded.clone();
                    accumulate(&mut sums, host.by_ref().take(values.len()), values);
                    sums.into_iter().map(|s| s / weight).collect()
                }
                Entry::Value(_) => host.next().expect("one value read per entry"),
                Entry::Derived(_, derive) => {
                    let read = host.next().expect("one tensor read per entry");
                    (0..self.width).map(|r| derive(&read, r)).collect()
                }
                Entry::Host(v) if v.len() == 1 => vec![v[0]; self.width],
                Entry::Host(v) => v.clone(),
            };
            for (replica, value) in out.iter_mut().zip(values) {
                replica.insert(name.clone(), value);
            }
        }
        Ok(out)
    }
}

/// Adds `wᵢ xᵢ` to `sums` (one per replica) in order: `read` the values `xᵢ` read back, `values`
/// the entries they were read from, with their weights.
fn accumulate(
    sums: &mut [f32],
    read: impl IntoIterator<Item = Vec<f32>>,
    values: &[(Tensor, f32)],
) {
    for (x, (_, w)) in read.into_iter().zip(values) {
        for (sum, x) in sums.iter_mut().zip(x) {
            *sum += x * w;
        }
    }
}

fn kind_clash(name: &str) -> Error {
    Error::value(
        "Metrics::add",
        format!("`{name}`, already set as a single value this interval"),
        "one kind of metric per name",
    )
}
