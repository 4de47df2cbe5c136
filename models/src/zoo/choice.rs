//! Layers chosen at run time: a model variant of the zoo holds a [`DenseLayer`], [`ConvLayer`] or
//! [`NormLayer`] and lists the layer inside as its child, so that `find("fc1")` returns the
//! concrete layer (a [`Linear`], a [`NormalizedWeightsLinear`], …) for an algorithm to downcast.

use crate::layers::{
    BatchNorm, Conv2d, LayerNorm, Linear, NormConv2d, NormalizedWeightsLinear, SvdConv2d, SvdLinear,
};
use crate::module::{Ctx, Module};
use dynlab_autodiff::Var;
use dynlab_runtime::Result;

macro_rules! layer_choice {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident($ty:ty)),* $(,)? }) => {
        $(#[$doc])*
        // A model holds a handful of these: boxing the larger variants would save nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug)]
        pub enum $name {
            $($(#[$vdoc])* $variant($ty)),*
        }

        impl $name {
            /// The layer inside.
            pub fn module(&self) -> &dyn Module {
                match self {
                    $($name::$variant(l) => l),*
                }
            }

            /// The layer inside, mutable.
            pub fn module_mut(&mut self) -> &mut dyn Module {
                match self {
                    $($name::$variant(l) => l),*
                }
            }

            /// Runs the layer inside as the child `name` (taps, replacements and error paths
            /// see it).
            pub fn call(&self, name: &str, x: &Var, ctx: &mut Ctx) -> Result<Var> {
                ctx.call(name, self.module(), x)
            }
        }
    };
}

layer_choice!(
    /// A dense layer of the zoo.
    DenseLayer {
        /// `y = xW + b`.
        Linear(Linear),
        /// Renormalised weights.
        Normalized(NormalizedWeightsLinear),
        /// SVD factors.
        Svd(SvdLinear),
    }
);

layer_choice!(
    /// A convolution of the zoo.
    ConvLayer {
        /// Plain convolution.
        Conv(Conv2d),
        /// Filters renormalised per channel.
        Norm(NormConv2d),
        /// SVD factors.
        Svd(SvdConv2d),
    }
);

layer_choice!(
    /// A normalisation layer of the zoo.
    NormLayer {
        /// Layer norm over the features (for images, over `[C, H, W]`).
        Layer(LayerNorm),
        /// Batch norm per channel.
        Batch(BatchNorm),
    }
);

impl NormLayer {
    /// Normalises `x` as the child `name`; a layer norm of an image `[N, C, H, W]` runs over its
    /// flattened `[C·H·W]` (PyTorch's `LayerNorm([C, H, W])`).
    pub fn apply(&self, name: &str, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        match self {
            NormLayer::Layer(_) if x.shape().len() == 4 => {
                let shape: Vec<isize> = x.shape().iter().map(|&d| d as isize).collect();
                let flat = x.reshape(&[shape[0], -1])?;
                self.call(name, &flat, ctx)?.reshape(&shape)
            }
            _ => self.call(name, x, ctx),
        }
    }
}

impl DenseLayer {
    /// Input features.
    pub fn inputs(&self) -> usize {
        match self {
            DenseLayer::Linear(l) => l.inputs(),
            DenseLayer::Normalized(l) => l.inputs(),
            DenseLayer::Svd(l) => l.inputs(),
        }
    }
}
