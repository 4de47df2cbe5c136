//! Neural-ODE training of the signal model (neural-gnn `Neural_ode_wrapper_Signal.py`, which calls
//! torchdiffeq's `odeint` / `odeint_adjoint`): the state `u` follows `du/dt = f(u)` with `f` the
//! graph network, integrated over `T·dt` from a recorded frame, and the loss compares the end
//! state with the recorded one.
//!
//! Solvers (explicit Runge–Kutta tableaus): `euler`, `midpoint`, `heun3` (Heun's third order),
//! `rk4` (the classic 3/8-free one), one step per frame interval `dt` as torchdiffeq's fixed-grid
//! methods; `dopri5` (Dormand–Prince 5(4)) with adaptive steps inside each interval: error
//! `‖y₅ − y₄‖_RMS / (atol + rtol · max(|y|, |y_new|))`, accepted at ≤ 1, next step
//! `h · clamp(0.9 · err^{−1/5}, 0.2, 10)` (torchdiffeq's rule); the first trial step is the whole
//! interval (torchdiffeq estimates one from the derivatives instead). With backpropagation through
//! the solver the accepted steps are found on values first and then taken again on the tape.
//!
//! Gradients: backpropagation through the solver's operations ([`odeint`]), or the adjoint method
//! ([`odeint_adjoint`], Chen et al. 2018): the forward pass keeps no graph, and the backward pass
//! integrates `u` together with `a = ∂L/∂u` and `θ̄` backwards over the same steps,
//! `da/dt = −aᵀ ∂f/∂u`, `dθ̄/dt = −aᵀ ∂f/∂θ`, with the same tableau (vector–Jacobian products by
//! the tape at every stage). `ode_state_clamp` clamps the state to `±c` after every step.

use dynlab_autodiff::{enable_grad, grad, no_grad, GradOptions, Var};
use dynlab_runtime::{Error, Result, Tensor};
use std::rc::Rc;

/// The right-hand side `f(u)` shared with an adjoint op's backward rule.
pub type Dynamics = Rc<dyn Fn(&Var) -> Result<Var>>;

/// The solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OdeMethod {
    /// Forward Euler.
    Euler,
    /// Explicit midpoint.
    Midpoint,
    /// Heun's third-order method.
    Heun3,
    /// Classic fourth-order Runge–Kutta.
    Rk4,
    /// Dormand–Prince 5(4), adaptive.
    Dopri5,
}

impl OdeMethod {
    /// Parses torchdiffeq's names.
    pub fn parse(name: &str) -> Option<OdeMethod> {
        Some(match name {
            "euler" => OdeMethod::Euler,
            "midpoint" => OdeMethod::Midpoint,
            "heun3" => OdeMethod::Heun3,
            "rk4" => OdeMethod::Rk4,
            "dopri5" => OdeMethod::Dopri5,
            _ => return None,
        })
    }
}

/// Solver settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OdeOptions {
    /// The solver.
    pub method: OdeMethod,
    /// Relative tolerance of `dopri5`.
    pub rtol: f32,
    /// Absolute tolerance of `dopri5`.
    pub atol: f32,
    /// Clamp the state to `±c` after every step.
    pub state_clamp: Option<f32>,
    /// Most `dopri5` steps (accepted or not) per interval before it is an error.
    pub max_steps: usize,
}

/// An explicit Runge–Kutta tableau: stage nodes' coefficients `a`, weights `b`, and for embedded
/// pairs the lower-order weights.
struct Tableau {
    a: &'static [&'static [f64]],
    b: &'static [f64],
    b_low: Option<&'static [f64]>,
}

const EULER: Tableau = Tableau {
    a: &[&[]],
    b: &[1.0],
    b_low: None,
};
const MIDPOINT: Tableau = Tableau {
    a: &[&[], &[0.5]],
    b: &[0.0, 1.0],
    b_low: None,
};
const HEUN3: Tableau = Tableau {
    a: &[&[], &[1.0 / 3.0], &[0.0, 2.0 / 3.0]],
    b: &[0.25, 0.0, 0.75],
    b_low: None,
};
const RK4: Tableau = Tableau {
    a: &[&[], &[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0]],
    b: &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
    b_low: None,
};
const DOPRI5: Tableau = Tableau {
    a: &[
        &[],
        &[1.0 / 5.0],
        &[3.0 / 40.0, 9.0 / 40.0],
        &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
        &[
            19372.0 / 6561.0,
            -25360.0 / 2187.0,
            64448.0 / 6561.0,
            -212.0 / 729.0,
        ],
        &[
            9017.0 / 3168.0,
            -355.0 / 33.0,
            46732.0 / 5247.0,
            49.0 / 176.0,
            -5103.0 / 18656.0,
        ],
        &[
            35.0 / 384.0,
            0.0,
            500.0 / 1113.0,
            125.0 / 192.0,
            -2187.0 / 6784.0,
            11.0 / 84.0,
        ],
    ],
    b: &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
        0.0,
    ],
    b_low: Some(&[
        5179.0 / 57600.0,
        0.0,
        7571.0 / 16695.0,
        393.0 / 640.0,
        -92097.0 / 339200.0,
        187.0 / 2100.0,
        1.0 / 40.0,
    ]),
};

fn tableau(method: OdeMethod) -> &'static Tableau {
    match method {
        OdeMethod::Euler => &EULER,
        OdeMethod::Midpoint => &MIDPOINT,
        OdeMethod::Heun3 => &HEUN3,
        OdeMethod::Rk4 => &RK4,
        OdeMethod::Dopri5 => &DOPRI5,
    }
}

/// What a solver state must do: `self + Σ c_k · x_k`.
pub trait OdeState: Clone {
    /// `self + Σ_k coefficients[k] · terms[k]` (zero coefficients skipped).
    fn combine(&self, coefficients: &[f64], terms: &[Self]) -> Result<Self>;
}

impl OdeState for Var {
    fn combine(&self, coefficients: &[f64], terms: &[Var]) -> Result<Var> {
        let mut acc = self.clone();
        for (&c, t) in coefficients.iter().zip(terms) {
            if c != 0.0 {
                acc = acc.add(&t.mul_scalar(c as f32)?)?;
            }
        }
        Ok(acc)
    }
}

impl OdeState for Vec<Tensor> {
    fn combine(&self, coefficients: &[f64], terms: &[Vec<Tensor>]) -> Result<Vec<Tensor>> {
        let mut acc = self.clone();
        for (&c, t) in coefficients.iter().zip(terms) {
            if c != 0.0 {
                for (a, x) in acc.iter_mut().zip(t) {
                    *a = a.add(&x.mul_scalar(c as f32)?)?;
                }
            }
        }
        Ok(acc)
    }
}

/// One step of `tableau` from `y` with step `h`: the new state and (embedded pairs) the
/// lower-order one.
fn rk_step<S: OdeState>(
    tab: &Tableau,
    f: &mut dyn FnMut(&S) -> Result<S>,
    y: &S,
    h: f64,
) -> Result<(S, Option<S>)> {
    let mut k: Vec<S> = Vec::with_capacity(tab.b.len());
    for row in tab.a {
        let coefficients: Vec<f64> = row.iter().map(|a| a * h).collect();
        let stage = y.combine(&coefficients, &k)?;
        k.push(f(&stage)?);
    }
    let weights = |b: &[f64]| b.iter().map(|b| b * h).collect::<Vec<f64>>();
    let high = y.combine(&weights(tab.b), &k)?;
    let low = tab.b_low.map(|b| y.combine(&weights(b), &k)).transpose()?;
    Ok((high, low))
}

/// The step sizes `dopri5` takes over one interval of length `dt` from `y` (decided on values only),
/// and the end state.
fn adaptive_steps(
    f: &mut dyn FnMut(&Var) -> Result<Var>,
    y: &Var,
    dt: f64,
    o: &OdeOptions,
) -> Result<(Vec<f64>, Var)> {
    let (mut t, mut h, mut y) = (0.0, dt, y.clone());
    let mut steps = Vec::new();
    let mut tries = 0;
    while t < dt * (1.0 - 1e-9) {
        tries += 1;
        if tries > o.max_steps {
            return Err(Error::value(
                "odeint",
                format!(
                    "{} dopri5 steps in one interval (last h {h:e})",
                    o.max_steps
                ),
                "fewer steps (raise training.ode_rtol / ode_atol, or use a fixed-step method)",
            ));
        }
        h = h.min(dt - t);
        let (high, low) = rk_step(tableau(OdeMethod::Dopri5), f, &y, h)?;
        let err = error_ratio(
            y.value(),
            high.value(),
            low.expect("dopri5 is embedded").value(),
            o,
        )?;
        if err <= 1.0 {
            t += h;
            steps.push(h);
            y = clamp(&high, o.state_clamp)?;
        }
        if !err.is_finite() {
            return Err(Error::value(
                "odeint",
                format!("a non-finite error estimate at t = {t:e}"),
                "a finite state (lower the learning rate or set training.ode_state_clamp)",
            ));
        }
        let factor = if err == 0.0 {
            10.0
        } else {
            (0.9 * err.powf(-0.2)).clamp(0.2, 10.0)
        };
        h *= factor;
    }
    Ok((steps, y))
}

/// `‖high − low‖_RMS` relative to `atol + rtol · max(|y|, |high|)` (torchdiffeq's mixed norm).
fn error_ratio(y: &Tensor, high: &Tensor, low: &Tensor, o: &OdeOptions) -> Result<f64> {
    let scale = y
        .abs()?
        .maximum(&high.abs()?)?
        .mul_scalar(o.rtol)?
        .add_scalar(o.atol)?;
    let ratio = high.sub(low)?.div(&scale)?;
    let mean_square = ratio.square()?.mean_all()?.item()? as f64;
    Ok(mean_square.sqrt())
}

fn clamp(y: &Var, c: Option<f32>) -> Result<Var> {
    match c {
        Some(c) => y.clamp(-c, c),
        None => Ok(y.clone()),
    }
}

/// `u(intervals · dt)` from `u0` under `du/dt = f(u)`, differentiable by backpropagation through
/// the solver.
pub fn odeint(
    f: &mut dyn FnMut(&Var) -> Result<Var>,
    u0: &Var,
    intervals: usize,
    dt: f32,
    o: &OdeOptions,
) -> Result<Var> {
    let mut y = u0.clone();
    for _ in 0..intervals {
        y = match o.method {
            OdeMethod::Dopri5 => {
                let steps = no_grad(|| adaptive_steps(f, &y, dt as f64, o))?.0;
                let mut z = y;
                for h in steps {
                    z = clamp(&rk_step(tableau(o.method), f, &z, h)?.0, o.state_clamp)?;
                }
                z
            }
            m => clamp(&rk_step(tableau(m), f, &y, dt as f64)?.0, o.state_clamp)?,
        };
    }
    Ok(y)
}

/// [`odeint`] with gradients by the adjoint method: `params` are the leaves `f` depends on (the
/// model's parameters); the result's backward integrates the adjoint system over the forward's
/// steps in reverse (see the module docs). Its gradients are constants (no second derivatives).
pub fn odeint_adjoint(
    f: Dynamics,
    params: Vec<Var>,
    u0: &Var,
    intervals: usize,
    dt: f32,
    o: &OdeOptions,
) -> Result<Var> {
    let mut steps = Vec::new();
    let end = no_grad(|| -> Result<Var> {
        let mut g = |u: &Var| f(u);
        let mut y = u0.clone();
        for _ in 0..intervals {
            match o.method {
                OdeMethod::Dopri5 => {
                    let (hs, z) = adaptive_steps(&mut g, &y, dt as f64, o)?;
                    steps.extend(hs);
                    y = z;
                }
                m => {
                    y = clamp(
                        &rk_step(tableau(m), &mut g, &y, dt as f64)?.0,
                        o.state_clamp,
                    )?;
                    steps.push(dt as f64);
                }
            }
        }
        Ok(y)
    })?;
    let method = o.method;
    let params_rule = params.clone();
    let mut parents: Vec<&Var> = vec![u0];
    parents.extend(params.iter());
    let end_value = end.value().clone();
    Ok(Var::custom(
        "odeint_adjoint",
        end_value.clone(),
        &parents,
        move |g| {
            let grads = adjoint_backward(&*f, &params_rule, method, &steps, &end_value, g.value())?;
            Ok(grads.into_iter().map(|t| Some(Var::constant(t))).collect())
        },
    ))
}

/// Integrates `[u, a, θ̄…]` from the end state backwards over `steps` (last first):
/// `du/dt = f(u)`, `da/dt = −aᵀ ∂f/∂u`, `dθ̄/dt = −aᵀ ∂f/∂θ`; returns `[a(0), θ̄…]`.
fn adjoint_backward(
    f: &dyn Fn(&Var) -> Result<Var>,
    params: &[Var],
    method: OdeMethod,
    steps: &[f64],
    end: &Tensor,
    g: &Tensor,
) -> Result<Vec<Tensor>> {
    let mut state: Vec<Tensor> = vec![end.clone(), g.clone()];
    for p in params {
        state.push(p.value().zeros_like()?);
    }
    let mut augmented = |s: &Vec<Tensor>| -> Result<Vec<Tensor>> {
        let u = Var::param(s[0].clone());
        // The backward sweep records nothing; these products need a graph of their own.
        let (out, vjps) = enable_grad(|| -> Result<(Var, Vec<Var>)> {
            let out = f(&u)?;
            let weighted = out.mul(&Var::constant(s[1].clone()))?.sum_all()?;
            let mut wrt: Vec<&Var> = vec![&u];
            wrt.extend(params.iter());
            let vjps = grad(&weighted, &wrt, GradOptions::default())?;
            Ok((out, vjps))
        })?;
        let mut d = vec![out.value().clone()];
        for v in vjps {
            d.push(v.value().neg()?);
        }
        Ok(d)
    };
    // The augmented system runs backwards in time: steps of −h with the same tableau (dopri5's
    // fifth-order weights on the forward's accepted steps).
    for &h in steps.iter().rev() {
        state = rk_step(tableau(method), &mut augmented, &state, -h)?.0;
    }
    Ok(state.split_off(1))
}
