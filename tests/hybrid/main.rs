//! The hybrid trainer: the phase machine and the monitor's recovery actions on scripted loss
//! sequences (host), each monitor signal on its fault, LinUCB against a host re-derivation and on a
//! synthetic reward, the state encoder's bookkeeping, the GRU ensemble on a synthetic trajectory
//! family, and on the device: roll-backs that restore the saved state bit for bit after a NaN
//! gradient, a learning-rate spike and a loss jump, and predicted steps that change the
//! parameters and follow the predicted loss on a quadratic bowl.

mod bandit;
mod control;
mod dynamics;
mod features;
mod monitor;
mod runner;
mod trainer;
