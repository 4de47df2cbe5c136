//! The component model: each decomposed layer `y = x W + b` (`W ∈ ℝ^{d_in×d_out}`, dynlab's
//! `[in, out]` layout) approximated by `C` rank-one subcomponents, `W ≈ V U = Σ_c V_{:,c} U_{c,:}`
//! (`V ∈ ℝ^{d_in×C}`, `U ∈ ℝ^{C×d_out}`; the reference's `A` and `B`), run with a mask per example
//! and subcomponent: `y = ((x V) ⊙ m) U + b`, the target's own bias frozen.
//!
//! Causal importance of subcomponent `c` on an input: a gate MLP on the inner activation
//! `h_c = x · V_{:,c}` — `raw_c = Σ_k w_out[c,k]·GELU(h_c·w_in[c,k] + b_in[c,k]) + b_out[c]`, all `C`
//! gates of a layer as two dense products ([`Gates`]) — or, for the vector variant, an MLP per
//! subcomponent on the whole input `x` (`d_in → d_gate → 1`, the `C` of them one product).
//! `g = σ_lower(raw)` on the mask path and `σ_upper(raw)` in the importance-minimality loss, the
//! hard sigmoids leaky (slope 0.01) below 0 and above 1 respectively (SPD paper, "Avoiding dead
//! gradients").

use dynlab_autodiff::Var;
use dynlab_models::{Ctx, Linear, Module, Param, ParamKind, Parts, PartsMut};
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use std::cell::RefCell;

/// Slope of the leaky parts of the hard sigmoids.
pub const LEAK: f32 = 0.01;

/// `σ_lower(x)`: `0.01·x` below 0, `x` on `[0, 1]`, 1 above (the mask path).
pub fn lower_leaky_hard_sigmoid(x: &Var) -> Result<Var> {
    x.leaky_relu(LEAK)?.minimum_scalar(1.0)
}

/// `σ_upper(x)`: 0 below 0, `x` on `[0, 1]`, `1 + 0.01·(x − 1)` above (the minimality loss).
pub fn upper_leaky_hard_sigmoid(x: &Var) -> Result<Var> {
    x.relu()?
        .rsub_scalar(1.0)?
        .leaky_relu(LEAK)?
        .rsub_scalar(1.0)
}

/// How subcomponents are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentInit {
    /// `V ~ N(0, 1/d_out)`, `U ~ N(0, 1/C)` (variances; the definition).
    Normal,
    /// The `spd-paper` code's: `V`, `U` drawn `N(0, 1)`, each column of `V` and row of `U`
    /// normalised, then row `c` of `U` scaled by `⟨V_{:,c} U_{c,:}, W⟩_F` (the projection of the
    /// target weight on that unit rank-one direction).
    Projected,
}

/// Which causal-importance function a layer's subcomponents have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CiFnKind {
    /// A `1 → d_gate → 1` GELU MLP per subcomponent on its inner activation `x · V_{:,c}`.
    Mlp {
        /// Hidden width.
        d_gate: usize,
    },
    /// A `d_in → d_gate → 1` GELU MLP per subcomponent on the layer's whole input.
    VectorMlp {
        /// Hidden width.
        d_gate: usize,
    },
}

/// The `C` gates of one layer (see the module docs): `w_in` `[C, d_gate]` (scalar form) or
/// `[d_in, C, d_gate]` (vector form), `b_in` and `w_out` `[C, d_gate]`, `b_out` `[C]`.
///
/// All `C` gates run as two dense products with block-diagonal weights built from the parameters
/// on the fly (`E[c, c'·d + k] = δ_{cc'} w_in[c, k]`, `F[c'·d + k, c] = δ_{cc'} w_out[c, k]`):
/// `raw = GELU(h E + b_in) F + b_out`. On the software Vulkan device this is ~10× faster than the
/// broadcast form `Σ_k w_out·GELU(h ⊗ w_in + b_in)`, whose strided kernels read each element
/// through index arithmetic; every step is a differentiable op, so higher derivatives stay exact.
#[derive(Clone, Debug)]
pub struct Gates {
    /// Input weights.
    pub w_in: Param,
    /// Input biases (0 at init).
    pub b_in: Param,
    /// Output weights.
    pub w_out: Param,
    /// Output biases (0 at init).
    pub b_out: Param,
    kind: CiFnKind,
    /// `[d_gate, C·d_gate]`: `tile[k, c·d + k'] = δ_{kk'}`.
    tile: Tensor,
    /// `[C, C·d_gate]`: `block[c, c'·d + k] = δ_{cc'}`.
    block: Tensor,
}

impl Gates {
    /// Gates of `kind` for `c` subcomponents of a layer with `d_in` inputs: weights normal with
    /// std `gain/√fan` (input: ReLU gain √2, fan 1 for the scalar form and `d_in` for the vector
    /// form; output: gain 1, fan `d_gate`), biases 0 — the reference's `init_param_`.
    pub fn new(
        kind: CiFnKind,
        c: usize,
        d_in: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Gates> {
        let (in_shape, fan_in, d_gate) = match kind {
            CiFnKind::Mlp { d_gate } => (vec![c, d_gate], 1, d_gate),
            CiFnKind::VectorMlp { d_gate } => (vec![d_in, c, d_gate], d_in, d_gate),
        };
        if d_gate == 0 || c == 0 || d_in == 0 {
            return Err(Error::value(
                "Gates::new",
                format!("C {c}, d_in {d_in}, d_gate {d_gate}"),
                "positive sizes",
            ));
        }
        let w_in_std = (2.0 / fan_in as f32).sqrt();
        let w_out_std = 1.0 / (d_gate as f32).sqrt();
        let weight = |t| Param::new(t, ParamKind::Weight);
        let bias = |t| Param::new(t, ParamKind::Bias);
        let width = c * d_gate;
        let tile: Vec<f32> = (0..d_gate * width)
            .map(|i| f32::from(u8::from(i / width == (i % width) % d_gate)))
            .collect();
        let block: Vec<f32> = (0..c * width)
            .map(|i| f32::from(u8::from(i / width == (i % width) / d_gate)))
            .collect();
        Ok(Gates {
            w_in: weight(Tensor::rand_normal(&in_shape, 0.0, w_in_std, rng, device)?),
            b_in: bias(Tensor::zeros(&[c, d_gate], device)?),
            w_out: weight(Tensor::rand_normal(
                &[c, d_gate],
                0.0,
                w_out_std,
                rng,
                device,
            )?),
            b_out: bias(Tensor::zeros(&[c], device)?),
            kind,
            tile: Tensor::from_vec(tile, &[d_gate, width], device)?,
            block: Tensor::from_vec(block, &[c, width], device)?,
        })
    }

    /// `[C, C·d]` block-diagonal spread of `w` (`[C, d]`): row `c` holds `w[c, :]` in block `c`.
    fn block_diagonal(&self, w: &Var) -> Result<Var> {
        w.matmul(&Var::constant(self.tile.clone()))?
            .mul(&Var::constant(self.block.clone()))
    }

    /// `raw [B, C]` from the inner activations `inner [B, C]` (scalar form) or the layer's input
    /// `x [B, d_in]` (vector form).
    pub fn raw(&self, inner: &Var, x: &Var) -> Result<Var> {
        let input = match self.kind {
            CiFnKind::Mlp { .. } => inner,
            CiFnKind::VectorMlp { .. } => x,
        };
        let (w_in, b_in, w_out, b_out) = (
            self.w_in.var(),
            self.b_in.var(),
            self.w_out.var(),
            self.b_out.var(),
        );
        self.raw_with(input, w_in, b_in, w_out, b_out)
    }

    /// [`Gates::raw`] with the parameters given (what gradient checks differentiate): `input` is
    /// the inner activations (scalar form) or the layer's input (vector form).
    pub fn raw_with(
        &self,
        input: &Var,
        w_in: &Var,
        b_in: &Var,
        w_out: &Var,
        b_out: &Var,
    ) -> Result<Var> {
        let (c, width) = (self.block.shape()[0], self.block.shape()[1]);
        let b_in = b_in.reshape(&[width as isize])?;
        let pre = match self.kind {
            CiFnKind::Mlp { .. } => input.linear(&self.block_diagonal(w_in)?, &b_in)?,
            CiFnKind::VectorMlp { .. } => {
                let d_in = w_in.shape()[0];
                input.linear(&w_in.reshape(&[d_in as isize, width as isize])?, &b_in)?
            }
        };
        let out = self.block_diagonal(w_out)?.transpose(0, 1)?;
        debug_assert_eq!(out.shape(), [width, c]);
        pre.gelu()?.linear(&out, b_out)
    }

    /// The kind of gate.
    pub fn kind(&self) -> CiFnKind {
        self.kind
    }
}

impl Module for Gates {
    /// Not a layer of its own: run through [`Gates::raw`].
    fn forward(&self, _input: &Var, _ctx: &mut Ctx) -> Result<Var> {
        Err(Error::value(
            "Gates::forward",
            "a direct call",
            "Gates::raw (gates need the inner activations and the layer input)",
        ))
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .param("w_in", &self.w_in)
            .param("b_in", &self.b_in)
            .param("w_out", &self.w_out)
            .param("b_out", &self.b_out)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .param("w_in", &mut self.w_in)
            .param("b_in", &mut self.b_in)
            .param("w_out", &mut self.w_out)
            .param("b_out", &mut self.b_out)
    }
}

/// The trainable subcomponents of one layer: `V`, `U` and the gates.
#[derive(Clone, Debug)]
pub struct LayerComponents {
    /// `V`, `[d_in, C]`.
    pub v: Param,
    /// `U`, `[C, d_out]`.
    pub u: Param,
    /// The causal-importance function.
    pub gates: Gates,
}

impl LayerComponents {
    /// `c` subcomponents approximating `weight` (`[d_in, d_out]`), initialised by `init`.
    pub fn new(
        weight: &Tensor,
        c: usize,
        init: ComponentInit,
        ci_fn: CiFnKind,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<LayerComponents> {
        let (d_in, d_out) = (weight.shape()[0], weight.shape()[1]);
        let (v, u) = match init {
            ComponentInit::Normal => (
                Tensor::rand_normal(&[d_in, c], 0.0, (1.0 / d_out as f32).sqrt(), rng, device)?,
                Tensor::rand_normal(&[c, d_out], 0.0, (1.0 / c as f32).sqrt(), rng, device)?,
            ),
            ComponentInit::Projected => projected_init(weight, c, rng, device)?,
        };
        Ok(LayerComponents {
            v: Param::new(v, ParamKind::Weight),
            u: Param::new(u, ParamKind::Weight),
            gates: Gates::new(ci_fn, c, d_in, rng, device)?,
        })
    }

    /// Number of subcomponents.
    pub fn c(&self) -> usize {
        self.v.value().shape()[1]
    }

    /// `V U`, `[d_in, d_out]`.
    pub fn weight(&self) -> Result<Var> {
        self.v.var().matmul(self.u.var())
    }
}

/// The projected initialisation (see [`ComponentInit::Projected`]), on the host.
fn projected_init(
    weight: &Tensor,
    c: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let (d_in, d_out) = (weight.shape()[0], weight.shape()[1]);
    let mut v: Vec<f32> = Tensor::rand_normal(&[d_in, c], 0.0, 1.0, rng, device)?.to_vec()?;
    let mut u: Vec<f32> = Tensor::rand_normal(&[c, d_out], 0.0, 1.0, rng, device)?.to_vec()?;
    let w: Vec<f32> = weight.contiguous()?.to_vec()?;
    for k in 0..c {
        let col = (0..d_in)
            .map(|i| (v[i * c + k] as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        (0..d_in).for_each(|i| v[i * c + k] = (v[i * c + k] as f64 / col) as f32);
        let row = u[k * d_out..(k + 1) * d_out]
            .iter()
            .map(|&x| (x as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let projection: f64 = (0..d_in)
            .flat_map(|i| (0..d_out).map(move |o| (i, o)))
            .map(|(i, o)| {
                v[i * c + k] as f64 * u[k * d_out + o] as f64 / row * w[i * d_out + o] as f64
            })
            .sum();
        for x in &mut u[k * d_out..(k + 1) * d_out] {
            *x = (*x as f64 / row * projection) as f32;
        }
    }
    Ok((
        Tensor::from_vec(v, &[d_in, c], device)?,
        Tensor::from_vec(u, &[c, d_out], device)?,
    ))
}

/// Every decomposed layer's subcomponents, as one module (what the optimizer trains); children
/// are named by the target layer's path (`linear1`, `layers.0.mlp_in`).
#[derive(Clone, Debug, Default)]
pub struct Components {
    /// `(path, subcomponents)` in the order the target names them.
    pub layers: Vec<(String, LayerComponents)>,
}

impl Module for Components {
    /// Not a model of its own: run through [`ComponentModel`].
    fn forward(&self, _input: &Var, _ctx: &mut Ctx) -> Result<Var> {
        Err(Error::value(
            "Components::forward",
            "a direct call",
            "ComponentModel::run",
        ))
    }

    fn parts(&self) -> Parts<'_> {
        self.layers.iter().fold(Parts::default(), |p, (path, l)| {
            p.child_dyn(path.clone(), l)
        })
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        self.layers
            .iter_mut()
            .fold(PartsMut::default(), |p, (path, l)| {
                p.child_dyn(path.clone(), l)
            })
    }
}

impl Module for LayerComponents {
    /// Not a layer of its own: run through [`ComponentModel`].
    fn forward(&self, _input: &Var, _ctx: &mut Ctx) -> Result<Var> {
        Err(Error::value(
            "LayerComponents::forward",
            "a direct call",
            "ComponentModel::run",
        ))
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .param("v", &self.v)
            .param("u", &self.u)
            .child("gates", &self.gates)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .param("v", &mut self.v)
            .param("u", &mut self.u)
            .child("gates", &mut self.gates)
    }
}

/// A decomposed layer's frozen target: `W` `[d_in, d_out]` and the bias.
#[derive(Clone, Debug)]
pub struct TargetLayer {
    /// The weight, `[d_in, d_out]`.
    pub weight: Tensor,
    /// The bias, `[d_out]`.
    pub bias: Option<Tensor>,
}

impl TargetLayer {
    /// The weight and bias of the `Linear` layer of `target` at `path` (errors name `op`).
    pub fn read(target: &dyn Module, path: &str, op: &'static str) -> Result<TargetLayer> {
        let linear = target
            .find(path)
            .ok_or_else(|| {
                Error::value(op, format!("no module at `{path}`"), "a path of the target")
            })?
            .downcast_ref::<Linear>()
            .ok_or_else(|| {
                Error::value(op, format!("`{path}` is not a Linear"), "Linear layers")
            })?;
        let weight = linear.weight.value().contiguous()?;
        if weight.shape().len() != 2 {
            return Err(Error::shape(
                op,
                format!("`{path}` weight {:?}", weight.shape()),
                "[d_in, d_out]",
            ));
        }
        Ok(TargetLayer {
            weight,
            bias: linear.bias.as_ref().map(|b| b.value().clone()),
        })
    }
}

/// How a decomposed layer runs in one forward pass.
#[derive(Clone, Debug)]
pub enum Route {
    /// The frozen target weight.
    Target,
    /// The subcomponents with this mask, `[B, C]`.
    Masked(Var),
}

/// A target model with some of its `Linear` layers decomposed (see the module docs). The target's
/// parameters are never trained: decomposed layers always run through a route (frozen weight or
/// masked subcomponents), and the optimizer sees only [`ComponentModel::components`].
pub struct ComponentModel<M: Module> {
    /// The target.
    pub target: M,
    /// The frozen weights of the decomposed layers, in the order of `components.layers`.
    pub targets: Vec<TargetLayer>,
    /// The trainable subcomponents.
    pub components: Components,
}

/// One forward pass's result: the output and each decomposed layer's input.
pub struct Run {
    /// The model's output.
    pub output: Var,
    /// The input of each decomposed layer (its "pre-weight activations").
    pub inputs: Vec<Var>,
}

impl<M: Module> ComponentModel<M> {
    /// Decomposes the `Linear` layers of `target` at `paths` into `c` subcomponents each.
    pub fn new(
        target: M,
        paths: &[String],
        c: usize,
        init: ComponentInit,
        ci_fn: CiFnKind,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<ComponentModel<M>> {
        let op = "ComponentModel::new";
        if paths.is_empty() || c == 0 {
            return Err(Error::value(
                op,
                format!("{} layers, C {c}", paths.len()),
                "at least one layer and C > 0",
            ));
        }
        let mut targets = Vec::new();
        let mut layers = Vec::new();
        for path in paths {
            let frozen = TargetLayer::read(&target, path, op)?;
            layers.push((
                path.clone(),
                LayerComponents::new(&frozen.weight, c, init, ci_fn, rng, device)?,
            ));
            targets.push(frozen);
        }
        Ok(ComponentModel {
            target,
            targets,
            components: Components { layers },
        })
    }

    /// Number of decomposed layers.
    pub fn layers(&self) -> usize {
        self.targets.len()
    }

    /// Runs the target on `x` with each decomposed layer `l` following `routes[l]`.
    pub fn run(&self, x: &Var, routes: &[Route]) -> Result<Run> {
        let op = "ComponentModel::run";
        if routes.len() != self.layers() {
            return Err(Error::value(
                op,
                format!("{} routes", routes.len()),
                format!("one per decomposed layer ({})", self.layers()),
            ));
        }
        let inputs: RefCell<Vec<Option<Var>>> = RefCell::new(vec![None; self.layers()]);
        let mut ctx = Ctx::train();
        for (l, ((path, comps), route)) in self.components.layers.iter().zip(routes).enumerate() {
            let (target, inputs) = (&self.targets[l], &inputs);
            ctx = ctx.with_replacement(path, move |_, x, _| {
                inputs.borrow_mut()[l] = Some(x.clone());
                match route {
                    Route::Target => target_forward(target, x),
                    Route::Masked(mask) => masked_forward(comps, target, x, mask),
                }
            });
        }
        let output = self.target.forward(x, &mut ctx)?;
        drop(ctx);
        let inputs = inputs
            .into_inner()
            .into_iter()
            .zip(&self.components.layers)
            .map(|(input, (path, _))| {
                input.ok_or_else(|| {
                    Error::value(
                        op,
                        format!("layer `{path}` was not run"),
                        "the target's forward to run every decomposed layer",
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Run { output, inputs })
    }

    /// The target's own output and its decomposed layers' inputs (every route [`Route::Target`]).
    pub fn run_target(&self, x: &Var) -> Result<Run> {
        self.run(x, &vec![Route::Target; self.layers()])
    }

    /// The raw gate outputs `[B, C]` of every layer for its inputs `inputs[l]`.
    pub fn raw_importances(&self, inputs: &[Var]) -> Result<Vec<Var>> {
        self.components
            .layers
            .iter()
            .zip(inputs)
            .map(|((_, comps), x)| {
                let inner = x.matmul(comps.v.var())?;
                comps.gates.raw(&inner, x)
            })
            .collect()
    }
}

/// `x W + b` with the frozen target weight.
fn target_forward(target: &TargetLayer, x: &Var) -> Result<Var> {
    let w = Var::constant(target.weight.clone());
    match &target.bias {
        Some(b) => x.linear(&w, &Var::constant(b.clone())),
        None => x.matmul(&w),
    }
}

/// `((x V) ⊙ m) U + b`.
fn masked_forward(
    comps: &LayerComponents,
    target: &TargetLayer,
    x: &Var,
    mask: &Var,
) -> Result<Var> {
    let inner = x.matmul(comps.v.var())?.mul(mask)?;
    match &target.bias {
        Some(b) => inner.linear(comps.u.var(), &Var::constant(b.clone())),
        None => inner.matmul(comps.u.var()),
    }
}
