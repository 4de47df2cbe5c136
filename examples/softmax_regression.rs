//! Softmax regression on Gaussian blobs, trained by full-batch gradient descent with the gradient
//! written by hand — an end-to-end run of the runtime (on-device RNG, broadcasting, reductions,
//! fused cross-entropy, indexing) until the autodiff and the grokking experiment land.
//!
//! Model: `logits = X W + b`, loss `L = mean_i CE(logits_i, y_i)`; gradients
//! `∂L/∂logits = (softmax(logits) − onehot(y)) / N`, `∂L/∂W = Xᵀ ∂L/∂logits`, `∂L/∂b = Σ_i ∂L/∂logits_i`.
//! (The product `X W` is a broadcast multiply and a sum until the matmul kernels exist.)
//!
//! `cargo run --release --example softmax_regression -- [--epochs N] [--seed S] [--lr LR]`

use dynlab::{Device, Rng, Tensor};
use std::time::Instant;

const CLASSES: usize = 4;
const DIMS: usize = 8;
const PER_CLASS: usize = 512;

struct Args {
    epochs: usize,
    seed: u64,
    lr: f32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        epochs: 200,
        seed: 0,
        lr: 0.5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--epochs" => args.epochs = value.parse().map_err(|e| bad(&e))?,
            "--seed" => args.seed = value.parse().map_err(|e| bad(&e))?,
            "--lr" => args.lr = value.parse().map_err(|e| bad(&e))?,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; expected --epochs, --seed or --lr"
                ))
            }
        }
    }
    Ok(args)
}

/// Blobs: class `c` is N(μ_c, 1) in `DIMS` dimensions with centres drawn N(0, 2²).
fn blobs(rng: &mut Rng, device: &Device) -> dynlab::Result<(Tensor, Tensor)> {
    let centres = Tensor::rand_normal(&[CLASSES, DIMS], 0.0, 2.0, rng, device)?;
    let n = CLASSES * PER_CLASS;
    let labels: Vec<i32> = (0..n).map(|i| (i / PER_CLASS) as i32).collect();
    let labels = Tensor::from_slice(&labels, &[n], device)?;
    let noise = Tensor::rand_normal(&[n, DIMS], 0.0, 1.0, rng, device)?;
    let x = centres.index_select(0, &labels)?.add(&noise)?;
    // Shuffle the rows so the split below mixes classes.
    let order = Tensor::randperm(n, rng, device)?;
    Ok((x.index_select(0, &order)?, labels.index_select(0, &order)?))
}

/// `a [N, D] · b [D, K]` as a broadcast product summed over D.
fn matmul(a: &Tensor, b: &Tensor) -> dynlab::Result<Tensor> {
    a.unsqueeze(2)?.mul(&b.unsqueeze(0)?)?.sum(1, false)
}

fn accuracy(logits: &Tensor, labels: &Tensor) -> dynlab::Result<f32> {
    let pred = logits.argmax(1, false)?.to_dtype(dynlab::DType::F32)?;
    pred.eq(&labels.to_dtype(dynlab::DType::F32)?)?
        .mean_all()?
        .item()
}

fn run(args: &Args) -> dynlab::Result<()> {
    let device = Device::default()?;
    println!("device: {}", device.name());
    let mut rng = Rng::new(args.seed);
    let (x, y) = blobs(&mut rng, &device)?;
    let n_train = x.shape()[0] * 3 / 4;
    let (x_train, y_train) = (x.narrow(0, 0, n_train)?, y.narrow(0, 0, n_train)?);
    let n_test = x.shape()[0] - n_train;
    let (x_test, y_test) = (x.narrow(0, n_train, n_test)?, y.narrow(0, n_train, n_test)?);
    let y_onehot = y_train.one_hot(CLASSES)?;

    let mut w = Tensor::rand_normal(&[DIMS, CLASSES], 0.0, 0.01, &mut rng, &device)?;
    let mut b = Tensor::zeros(&[CLASSES], &device)?;
    let start = Instant::now();
    for epoch in 1..=args.epochs {
        let logits = matmul(&x_train, &w)?.add(&b)?;
        let dlogits = logits
            .softmax(1)?
            .sub(&y_onehot)?
            .div_scalar(n_train as f32)?;
        let dw = x_train
            .unsqueeze(2)?
            .mul(&dlogits.unsqueeze(1)?)?
            .sum(0, false)?;
        let db = dlogits.sum(0, false)?;
        w = w.sub(&dw.mul_scalar(args.lr)?)?;
        b = b.sub(&db.mul_scalar(args.lr)?)?;
        if epoch == 1 || epoch % 50 == 0 || epoch == args.epochs {
            let loss = logits.cross_entropy(&y_train)?.item()?;
            if !loss.is_finite() {
                return Err(dynlab::Error::Numerical {
                    op: "softmax_regression",
                    message: format!("loss became {loss} at epoch {epoch}"),
                });
            }
            let test_logits = matmul(&x_test, &w)?.add(&b)?;
            println!(
                "epoch {epoch:>4}  train loss {loss:.4}  train acc {:.3}  test acc {:.3}  {:.1} epochs/s",
                accuracy(&logits, &y_train)?,
                accuracy(&test_logits, &y_test)?,
                epoch as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn main() {
    let result = parse_args()
        .map_err(|e| e.to_string())
        .and_then(|args| run(&args).map_err(|e| e.to_string()));
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
