//! Flow-matching sampler with classifier-free guidance, ported from `mmaudio/model/flow_matching.py`
//! (`FlowMatching.run_t0_to_t1`, Euler mode) and `MMAudio.ode_wrapper` in `mmaudio/model/networks.py` of
//! github.com/hkchengrex/MMAudio at commit 974010a026c731054592d8f777218bd9d85a6c24.
//!
//! Integrates dx/dt = v(x, t) from noise (t = 0) to data (t = 1 - min_sigma) with `num_steps` Euler steps on
//! torch's `linspace` grid. With guidance (`cfg_strength >= 1`) the velocity is
//! `cfg * v(x, t | cond) + (1 - cfg) * v(x, t | uncond)`; unlike the reference, which runs two forwards, the
//! conditional and unconditional branches are evaluated as **one batch** of size 2B.
//! Defaults of the reference (`eval_utils.py`, `demo.py`): 25 steps, CFG strength 4.5, min_sigma 0.

use candle_core::Tensor;

use crate::error::{Error, Result};

/// A network that predicts the flow (velocity) of a latent `x` at time `t` under its conditions: what
/// [`FlowMatching`] integrates. Each family's generator implements it.
pub trait FlowModel {
    /// What the network is conditioned on, for a batch.
    type Conditions;
    /// The flow at `x` `(B, ...)` and times `t` `(B,)`.
    fn predict_flow(&self, x: &Tensor, t: &Tensor, cond: &Self::Conditions) -> Result<Tensor>;
    /// The batch size of `cond`.
    fn batch_size(cond: &Self::Conditions) -> Result<usize>;
    /// `cond` and `uncond` as one batch (cond first), so that a guided step is one forward; `None` where they
    /// cannot be batched (different token counts).
    fn cat_conditions(cond: &Self::Conditions, uncond: &Self::Conditions) -> Result<Option<Self::Conditions>>;
}

/// Progress of one finished Euler step, handed to the caller's callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// 1-based index of the step just finished.
    pub step: usize,
    pub num_steps: usize,
    /// The time reached after this step.
    pub t: f32,
}

/// The Euler flow-matching integrator (`FlowMatching(min_sigma, 'euler', num_steps)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowMatching {
    pub num_steps: usize,
    pub min_sigma: f32,
    /// Evaluate the guided and unguided branches as one batch of 2B (default) rather than two forwards of B
    /// (half the peak activation memory, for tight GPUs).
    pub batch_cfg: bool,
}

impl Default for FlowMatching {
    fn default() -> Self {
        Self {
            num_steps: 25,
            min_sigma: 0.0,
            batch_cfg: true,
        }
    }
}

/// `torch.linspace(start, end, steps)` in f32, computed as torch's CPU kernel does (from both ends).
pub fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

impl FlowMatching {
    pub fn new(num_steps: usize) -> Self {
        Self {
            num_steps,
            ..Default::default()
        }
    }

    /// The time grid `t_0 = 0, ..., t_S = 1 - min_sigma`.
    pub fn timesteps(&self) -> Vec<f32> {
        linspace_f32(0.0, 1.0 - self.min_sigma, self.num_steps + 1)
    }

    /// Generates latents (`to_data`): `x0` is the noise `(B, N, latent_dim)`; `cond` / `uncond` are the prepared
    /// conditions of the guided and the unconditional branch (both of batch B, `uncond` from
    /// [`MMAudio::empty_conditions`]). `on_step` is called after every step; `cancelled` is checked before
    /// every step and stops with [`Error::Cancelled`].
    #[allow(clippy::too_many_arguments)]
    pub fn to_data<M: FlowModel>(
        &self,
        net: &M,
        x0: &Tensor,
        cond: &M::Conditions,
        uncond: &M::Conditions,
        cfg_strength: f64,
        on_step: &mut dyn FnMut(Step),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Tensor> {
        let b = x0.dim(0)?;
        let (bc, bu) = (M::batch_size(cond)?, M::batch_size(uncond)?);
        if bc != b || bu != b {
            return Err(Error::BadInput(format!("noise batch {b}, conditions {bc} / {bu}")));
        }
        let guided = cfg_strength >= 1.0;
        // One batch of 2B where the model can batch both branches and `batch_cfg` is set; otherwise the two
        // branches run as two forwards, as the reference does.
        let both = if guided && self.batch_cfg { M::cat_conditions(cond, uncond)? } else { None };
        let ts = self.timesteps();
        let mut x = x0.clone();
        for i in 0..self.num_steps {
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let (t, next_t) = (ts[i], ts[i + 1]);
            // t stays f32 in every dtype, as the reference's linspace (see TimestepEmbedder)
            let t_b = |n: usize| -> Result<Tensor> { Ok(Tensor::full(t, n, x.device())?) };
            let flow = match (&both, guided) {
                (Some(both), _) => {
                    let f = net.predict_flow(&Tensor::cat(&[&x, &x], 0)?, &t_b(2 * b)?, both)?;
                    let (fc, fu) = (f.narrow(0, 0, b)?, f.narrow(0, b, b)?);
                    ((fc * cfg_strength)? + (fu * (1.0 - cfg_strength))?)?
                }
                (None, true) => {
                    let fc = net.predict_flow(&x, &t_b(b)?, cond)?;
                    let fu = net.predict_flow(&x, &t_b(b)?, uncond)?;
                    ((fc * cfg_strength)? + (fu * (1.0 - cfg_strength))?)?
                }
                (None, false) => net.predict_flow(&x, &t_b(b)?, cond)?,
            };
            let dt = next_t - t;
            x = (x + (flow * dt as f64)?)?;
            on_step(Step {
                step: i + 1,
                num_steps: self.num_steps,
                t: next_t,
            });
        }
        Ok(x)
    }
}
