pub use dynlab_runtime;
