//! The forward context: what a forward pass needs besides its input.
//! - the mode ([`Mode::Train`] or [`Mode::Eval`]): dropout and batch statistics differ;
//! - an RNG for stochastic layers (borrowed from the caller, so a run's randomness stays one stream);
//! - taps: the outputs of submodules and the named points modules emit ([`Ctx::tap`]), captured
//!   when requested by path (what rank tracking, continual backprop and SPD read);
//! - replacements: a function to run instead of the submodule at a path;
//! - the current module path, which errors raised inside a module are tagged with;
//! - the replica count when the model runs as `R` stacked replicas ([`crate::Replicas`]): layers
//!   then take inputs and parameters with a leading replica axis.

use super::{join, Module};
use dynlab_autodiff::Var;
use dynlab_runtime::{Error, Result, Rng};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Training or evaluation behaviour of mode-dependent layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, active dropout, running statistics updated.
    Train,
    /// Running statistics, no dropout, nothing updated.
    Eval,
}

/// Runs instead of the module at a path: gets that module, its input and the context.
pub type Replacement<'r> = Box<dyn Fn(&dyn Module, &Var, &mut Ctx) -> Result<Var> + 'r>;

/// Which taps to capture.
enum TapRequest {
    Paths(BTreeSet<String>),
    All,
}

/// The context of one forward pass (see the module docs).
pub struct Ctx<'r> {
    mode: Mode,
    rng: Option<&'r mut Rng>,
    label: String,
    path: String,
    requested: TapRequest,
    captured: BTreeMap<String, Var>,
    replacements: HashMap<String, Replacement<'r>>,
    replicas: Option<usize>,
}

impl<'r> Ctx<'r> {
    /// A context in `mode` with no RNG, no taps and no replacements.
    pub fn new(mode: Mode) -> Ctx<'r> {
        Ctx {
            mode,
            rng: None,
            label: String::new(),
            path: String::new(),
            requested: TapRequest::Paths(BTreeSet::new()),
            captured: BTreeMap::new(),
            replacements: HashMap::new(),
            replicas: None,
        }
    }

    /// Training mode.
    pub fn train() -> Ctx<'r> {
        Ctx::new(Mode::Train)
    }

    /// Evaluation mode.
    pub fn eval() -> Ctx<'r> {
        Ctx::new(Mode::Eval)
    }

    /// Stochastic layers draw from `rng`.
    pub fn with_rng(mut self, rng: &'r mut Rng) -> Ctx<'r> {
        self.rng = Some(rng);
        self
    }

    /// Names the model in error paths (`convnet` gives `convnet.fc1: …`).
    pub fn labelled(mut self, label: &str) -> Ctx<'r> {
        self.label = label.to_string();
        self
    }

    /// Captures the taps at these paths (a submodule's path, such as `layers.1`, or a named
    /// point, such as `hidden.0`).
    pub fn with_taps<S: AsRef<str>>(mut self, paths: &[S]) -> Ctx<'r> {
        let set = match &mut self.requested {
            TapRequest::Paths(set) => set,
            TapRequest::All => return self,
        };
        set.extend(paths.iter().map(|p| p.as_ref().to_string()));
        self
    }

    /// Captures every tap (to discover what a model offers).
    pub fn with_all_taps(mut self) -> Ctx<'r> {
        self.requested = TapRequest::All;
        self
    }

    /// Runs `replacement` instead of the module at `path`.
    pub fn with_replacement(
        mut self,
        path: &str,
        replacement: impl Fn(&dyn Module, &Var, &mut Ctx) -> Result<Var> + 'r,
    ) -> Ctx<'r> {
        self.replacements
            .insert(path.to_string(), Box::new(replacement));
        self
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether layers behave as in training.
    pub fn is_training(&self) -> bool {
        self.mode == Mode::Train
    }

    /// The RNG for a stochastic layer; an error naming the layer when none was given.
    pub fn rng(&mut self) -> Result<&mut Rng> {
        let at = self.display_path();
        self.rng.as_deref_mut().ok_or_else(|| {
            Error::value(
                "Ctx::rng",
                format!("a stochastic layer at `{at}` without an RNG"),
                "a context built with Ctx::with_rng",
            )
        })
    }

    /// `Some(R)` while the model runs as `R` stacked replicas: inputs and parameters carry a
    /// leading axis of `R` ([`crate::Replicas`]).
    pub fn replicas(&self) -> Option<usize> {
        self.replicas
    }

    /// Sets the replica count for what runs next, returning the previous one (what
    /// [`crate::Replicas`] does around its model's forward pass).
    pub fn set_replicas(&mut self, replicas: Option<usize>) -> Option<usize> {
        std::mem::replace(&mut self.replicas, replicas)
    }

    /// The path of the module running now (`""` at the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs `child` (named `name` inside the current module) on `input`: through its replacement
    /// if one is registered for its path, capturing its output if tapped, and tagging errors with
    /// its path.
    pub fn call(&mut self, name: &str, child: &dyn Module, input: &Var) -> Result<Var> {
        self.scoped(name, |ctx| {
            let out = match ctx.replacements.remove(&ctx.path) {
                Some(replacement) => {
                    let out = replacement(child, input, ctx);
                    ctx.replacements.insert(ctx.path.clone(), replacement);
                    out
                }
                None => child.forward(input, ctx),
            }?;
            ctx.capture(ctx.path.clone(), &out);
            Ok(out)
        })
    }

    /// Runs `f` as the child `name` of the current module (its taps and error paths under
    /// `name`): what [`Ctx::call`] does around a child's `forward`, for a container that calls one
    /// of its children through another method; no replacement applies and the result is not
    /// captured.
    pub fn scoped<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Ctx<'r>) -> Result<T>,
    ) -> Result<T> {
        let parent_len = self.path.len();
        self.path = join(&self.path, name);
        let result = f(self).map_err(|e| e.in_module(self.display_path()));
        self.path.truncate(parent_len);
        result
    }

    /// Offers `value` as the named point `name` of the current module (`hidden.0` inside `mlp`
    /// is the tap `mlp.hidden.0`); captured when requested.
    pub fn tap(&mut self, name: &str, value: &Var) {
        if self.wants_any() {
            self.capture(join(&self.path, name), value);
        }
    }

    /// The captured value of the tap at `path`.
    pub fn tapped(&self, path: &str) -> Option<&Var> {
        self.captured.get(path)
    }

    /// Every captured tap by path.
    pub fn taps(&self) -> &BTreeMap<String, Var> {
        &self.captured
    }

    /// Takes the captured taps out of the context.
    pub fn take_taps(&mut self) -> BTreeMap<String, Var> {
        std::mem::take(&mut self.captured)
    }

    fn wants_any(&self) -> bool {
        match &self.requested {
            TapRequest::Paths(set) => !set.is_empty(),
            TapRequest::All => true,
        }
    }

    fn capture(&mut self, path: String, value: &Var) {
        let wanted = match &self.requested {
            TapRequest::Paths(set) => set.contains(&path),
            TapRequest::All => true,
        };
        if wanted {
            self.captured.insert(path, value.clone());
        }
    }

    /// The current path with the model's label in front, for messages.
    fn display_path(&self) -> String {
        match (self.label.is_empty(), self.path.is_empty()) {
            (true, _) => self.path.clone(),
            (false, true) => self.label.clone(),
            (false, false) => format!("{}.{}", self.label, self.path),
        }
    }
}
