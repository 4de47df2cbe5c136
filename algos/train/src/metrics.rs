//! Metrics that stay on the device between log points. Each metric is a weighted mean over the
//! interval (`Σ wᵢ xᵢ / Σ wᵢ`: a loss weighted by batch rows, a gradient norm with weight 1), or a
//! value set once (a weight norm computed at log time). [`Metrics::read`] brings every metric back
//! in one read-back and starts a new interval; recording costs no launch. The host forms `wᵢ xᵢ`
//! and sums them in the order they were added, in f32.

use dynlab_runtime::{Error, Result, Tensor};
use std::collections::BTreeMap;

/// One metric of the current interval.
#[derive(Clone)]
enum Entry {
    /// Values `xᵢ` (device scalars) with their weights `wᵢ`, and `Σ wᵢ`.
    Mean {
        values: Vec<(Tensor, f32)>,
        weight: f32,
    },
    /// A device scalar set at log time (boxed: a tensor handle is large).
    Value(Box<Tensor>),
    /// A host value.
    Host(f32),
    /// A value the host derives at read time from a device tensor's elements.
    Derived(Box<Tensor>, Derive),
}

/// How a derived metric is formed from the elements read back.
type Derive = std::rc::Rc<dyn Fn(&[f32]) -> f32>;

/// Device-side accumulators by name (see the module docs).
#[derive(Clone, Default)]
pub struct Metrics {
    entries: BTreeMap<String, Entry>,
}

impl Metrics {
    /// Adds the device scalar `value` with weight `weight` to the interval mean of `name`.
    pub fn add(&mut self, name: &str, value: &Tensor, weight: f32) -> Result<()> {
        if value.numel() != 1 {
            return Err(Error::shape(
                "Metrics::add",
                format!("`{name}` of shape {:?}", value.shape()),
                "a scalar",
            ));
        }
        let value = value.reshape(&[1])?;
        let entry = self.entries.entry(name.to_string()).or_insert(Entry::Mean {
            values: Vec::new(),
            weight: 0.0,
        });
        match entry {
            Entry::Mean { values, weight: w } => {
                values.push((value, weight));
                *w += weight;
                Ok(())
            }
            _ => Err(kind_clash(name)),
        }
    }

    /// Sets `name` to the device scalar `value` for this interval.
    pub fn set(&mut self, name: &str, value: &Tensor) -> Result<()> {
        self.entries.insert(
            name.to_string(),
            Entry::Value(Box::new(value.reshape(&[1])?)),
        );
        Ok(())
    }

    /// Sets `name` to `derive(values)`, `values` the elements of `tensor` read back with the other
    /// metrics (so a statistic that needs several device numbers costs no read of its own).
    pub fn set_derived(
        &mut self,
        name: &str,
        tensor: &Tensor,
        derive: impl Fn(&[f32]) -> f32 + 'static,
    ) -> Result<()> {
        let flat = tensor.reshape(&[-1])?;
        let entry = Entry::Derived(Box::new(flat), std::rc::Rc::new(derive));
        self.entries.insert(name.to_string(), entry);
        Ok(())
    }

    /// Sets `name` to a host value for this interval.
    pub fn set_host(&mut self, name: &str, value: f32) {
        self.entries.insert(name.to_string(), Entry::Host(value));
    }

    /// Whether nothing was recorded since the last read.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every metric of the interval (one read-back), and a fresh interval.
    pub fn read(&mut self) -> Result<BTreeMap<String, f32>> {
        let entries = std::mem::take(&mut self.entries);
        let device: Vec<&Tensor> = entries
            .values()
            .flat_map(|e| match e {
                Entry::Mean { values, .. } => values.iter().map(|(t, _)| t).collect(),
                Entry::Value(t) | Entry::Derived(t, _) => vec![t.as_ref()],
                Entry::Host(_) => vec![],
            })
            .collect();
        let host: Vec<f32> = Tensor::read_many(&device)?.into_iter().flatten().collect();
        let mut next = host.iter();
        let mut out = BTreeMap::new();
        for (name, entry) in &entries {
            let value = match entry {
                Entry::Mean { values, weight } => {
                    let taken = next.by_ref().take(values.len());
                    let sum = taken.zip(values).map(|(x, (_, w))| x * w).sum::<f32>();
                    sum / weight
                }
                Entry::Value(_) => *next.next().expect("one value read per entry"),
                Entry::Derived(t, derive) => {
                    let values: Vec<f32> = next.by_ref().take(t.numel()).copied().collect();
                    derive(&values)
                }
                Entry::Host(v) => *v,
            };
            out.insert(name.clone(), value);
        }
        Ok(out)
    }
}

fn kind_clash(name: &str) -> Error {
    Error::value(
        "Metrics::add",
        format!("`{name}`, already set as a single value this interval"),
        "one kind of metric per name",
    )
}
