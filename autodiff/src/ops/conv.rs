//! Convolution and pooling on the tape. Each gather (`im2col`, pooling) and its adjoint are a pair of
//! ops whose rules call each other, so gradients of gradients exist: the adjoint of a linear map's
//! adjoint is the map itself, and max pooling's adjoint (scatter to the winners) has the gather of
//! the winners as its own adjoint.

use crate::var::Var;
use dynlab_runtime::{conv_output_shape, conv_window, Conv2dOptions, Result, Tensor, Window};

impl Var {
    /// Receptive fields as rows (see `Tensor::im2col`).
    pub fn im2col(&self, window: &Window) -> Result<Var> {
        let w = *window;
        let value = self.value().im2col(window)?;
        Ok(Var::from_op("im2col", value, &[self], move |g| {
            Ok(vec![Some(g.col2im(&w)?)])
        }))
    }

    /// Adjoint of [`Var::im2col`].
    pub fn col2im(&self, window: &Window) -> Result<Var> {
        let w = *window;
        let value = self.value().col2im(window)?;
        Ok(Var::from_op("col2im", value, &[self], move |g| {
            Ok(vec![Some(g.im2col(&w)?)])
        }))
    }

    /// `conv2d(x [N, C, H, W], w [O, C/G, KH, KW], bias [O]?)` as im2col and a batched matmul
    /// `W_g · cols[n, g]`, all on the tape. When the batch's columns would exceed the device's
    /// largest buffer (wgpu's 128 MiB binding: a 32×32 VGG layer at batch 128 stores 302 MB), the
    /// batch is convolved in chunks of images whose columns fit, and the outputs concatenated.
    pub fn conv2d(&self, weight: &Var, bias: Option<&Var>, options: Conv2dOptions) -> Result<Var> {
        let window = conv_window(
            self.value(),
            weight.value(),
            bias.map(|b| b.value()),
            options,
        )?;
        let per_image: u64 = window.cols_shape()[1..].iter().product::<usize>() as u64 * 4;
        let fit = self.value().device().limits().max_buffer_bytes / per_image.max(1);
        let chunk = (fit as usize).max(1);
        if chunk < window.input[0] {
            return self.conv2d_in_chunks(weight, bias, options, chunk);
        }
        let g = options.groups as isize;
        let (o, k) = (weight.shape()[0] as isize, window.cols_shape()[2] as isize);
        let w = weight.reshape(&[g, o / g, k])?;
        let y = w
            .matmul(&self.im2col(&window)?)?
            .reshape(&conv_output_shape(&window, o as usize))?;
        match bias {
            Some(b) => y.add_channel_bias(b),
            None => Ok(y),
        }
    }

    /// [`Var::conv2d`] of `images` images at a time, the outputs concatenated along the batch
    /// (what `conv2d` does when the whole batch's columns do not fit in one buffer).
    pub fn conv2d_in_chunks(
        &self,
        weight: &Var,
        bias: Option<&Var>,
        options: Conv2dOptions,
        images: usize,
    ) -> Result<Var> {
        let n = self.shape().first().copied().unwrap_or(0);
        let parts = (0..n)
            .step_by(images.max(1))
            .map(|start| {
                self.narrow(0, start, images.min(n - start))?
                    .conv2d(weight, bias, options)
            })
            .collect::<Result<Vec<Var>>>()?;
        Var::cat(&parts.iter().collect::<Vec<_>>(), 0)
    }

    /// `x [N, C, ...] + bias [C]` (see `Tensor::add_channel_bias`); the bias gradient sums the
    /// output gradient over every dimension but the channels.
    pub fn add_channel_bias(&self, bias: &Var) -> Result<Var> {
        let value = self.value().add_channel_bias(bias.value())?;
        let mut channel_shape = vec![1; self.shape().len()];
        channel_shape[1] = bias.shape()[0];
        Ok(Var::from_op(
            "add_channel_bias",
            value,
            &[self, bias],
            move |g| {
                let gb = g.sum_to(&channel_shape)?.reshape(&[-1])?;
                Ok(vec![Some(g.clone()), Some(gb)])
            },
        ))
    }

    /// Max pooling (padding excluded); the gradient flows to each window's winner.
    pub fn max_pool2d(&self, kernel: [usize; 2], options: Conv2dOptions) -> Result<Var> {
        let (value, index) = self.value().max_pool2d(kernel, options)?;
        let window = Window::new("Var::max_pool2d", self.shape(), kernel, options)?;
        Ok(Var::from_op("max_pool2d", value, &[self], move |g| {
            Ok(vec![Some(scatter_to_winners(g, &index, &window)?)])
        }))
    }

    /// Average pooling (padding counted as zeros).
    pub fn avg_pool2d(&self, kernel: [usize; 2], options: Conv2dOptions) -> Result<Var> {
        let value = self.value().avg_pool2d(kernel, options)?;
        let window = Window::new("Var::avg_pool2d", self.shape(), kernel, options)?;
        Ok(Var::from_op("avg_pool2d", value, &[self], move |g| {
            Ok(vec![Some(avg_pool_adjoint(g, &window)?)])
        }))
    }

    /// Spatial mean kept as `[N, C, 1, 1]`.
    pub fn adaptive_avg_pool2d_1x1(&self) -> Result<Var> {
        self.mean(3, true)?.mean(2, true)
    }
}

/// `dx` from `dy` for max pooling; its own gradient gathers at the winners.
fn scatter_to_winners(dy: &Var, index: &Tensor, window: &Window) -> Result<Var> {
    let value = dy.value().max_pool2d_backward(index, window)?;
    let (index, w) = (index.clone(), *window);
    Ok(Var::from_op(
        "max_pool2d_backward",
        value,
        &[dy],
        move |g| {
            let [n, c, h, wd] = w.input;
            let [ho, wo] = w.out_hw;
            let flat = g.reshape(&[n as isize, c as isize, (h * wd) as isize])?;
            let at = index.reshape(&[n as isize, c as isize, (ho * wo) as isize])?;
            Ok(vec![Some(flat.gather(2, &at)?.reshape(&[
                n as isize,
                c as isize,
                ho as isize,
                wo as isize,
            ])?)])
        },
    ))
}

/// `dx` from `dy` for average pooling; its own gradient is average pooling.
fn avg_pool_adjoint(dy: &Var, window: &Window) -> Result<Var> {
    let value = dy.value().avg_pool2d_backward(window)?;
    let w = *window;
    Ok(Var::from_op(
        "avg_pool2d_backward",
        value,
        &[dy],
        move |g| {
            let o = w.options;
            Ok(vec![Some(g.avg_pool2d(w.kernel, o)?)])
        },
    ))
}
