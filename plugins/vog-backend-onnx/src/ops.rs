//! vog's own ONNX Runtime kernels ([`vog_onnx::VOG_DOMAIN`]), registered with every CPU session:
//! thin wrappers around [`vog_onnx::kernels`].

use std::marker::PhantomData;
use std::sync::Arc;

use ort::operator::{
    ComputeContext, Kernel, KernelContext, Operator, OperatorDomain, OperatorInput, OperatorOutput,
};
use ort::value::TensorElementType;
use vog_onnx::kernels::{max_pool_grad, relu_grad, Element, PoolGeometry, Scalar};

use crate::backend_err;

/// The operator domain, for one session (the session keeps it alive).
pub(crate) fn domain() -> vog_core::Result<Arc<OperatorDomain>> {
    OperatorDomain::new(vog_onnx::VOG_DOMAIN)
        .and_then(|d| d.add(MaxPoolGrad::<f32>(PhantomData)))
        .and_then(|d| d.add(MaxPoolGrad::<f64>(PhantomData)))
        .and_then(|d| d.add(ConvInputGrad::<f32>(PhantomData)))
        .and_then(|d| d.add(ConvInputGrad::<f64>(PhantomData)))
        .and_then(|d| d.add(ReluGrad::<f32>(PhantomData)))
        .and_then(|d| d.add(ReluGrad::<f64>(PhantomData)))
        .map(Arc::new)
        .map_err(|e| backend_err(format!("cannot register vog's ONNX Runtime kernels: {e}")))
}

/// Element types with an ONNX Runtime tensor type.
trait Typed: Element + Scalar + ort::value::PrimitiveTensorElementType + Send + Sync + 'static {
    const TYPE: TensorElementType;
}

impl Typed for f32 {
    const TYPE: TensorElementType = TensorElementType::Float32;
}

impl Typed for f64 {
    const TYPE: TensorElementType = TensorElementType::Float64;
}

/// `ai.vog.MaxPoolGrad(X, dY) -> dX` for one element type.
struct MaxPoolGrad<T>(PhantomData<T>);

impl<T: Typed> Operator for MaxPoolGrad<T> {
    type Kernel<'attr> = MaxPoolGradKernel<T>;

    fn name(&self) -> &str {
        vog_onnx::MAX_POOL_GRAD
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        [
            OperatorInput::required(T::TYPE),
            OperatorInput::required(T::TYPE),
        ]
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(T::TYPE)]
    }

    fn create_kernel<'attr>(&self, ctx: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
        let ints = |name: &str| ctx.get::<Vec<i64>>(name);
        let kernel = ints("kernel_shape")
            .ok_or_else(|| ort::Error::new("MaxPoolGrad: no kernel_shape attribute"))?;
        let geometry = PoolGeometry::from_attributes(
            &kernel,
            ints("strides").as_deref(),
            ints("pads").as_deref(),
            ints("dilations").as_deref(),
        )
        .map_err(ort::Error::new)?;
        Ok(MaxPoolGradKernel {
            geometry,
            relu: ctx.get::<i64>("relu").unwrap_or(0) != 0,
            _t: PhantomData,
        })
    }
}

struct MaxPoolGradKernel<T> {
    geometry: PoolGeometry,
    relu: bool,
    _t: PhantomData<T>,
}

/// A buffer written by several threads, each into its own disjoint range.
struct Shared<T>(*mut T, usize);

// SAFETY: the kernel below hands every thread a range of planes no other thread touches.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// # Safety
    /// `start + len` is within the buffer, which outlives the slice, and no other live slice
    /// overlaps it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.1, "range within the buffer");
        // SAFETY: in bounds (checked) and not aliased (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// Planes handed to one task of ONNX Runtime's thread pool at most.
const TASKS: usize = 16;

impl<T: Typed> Kernel for MaxPoolGradKernel<T> {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let missing = || ort::Error::new("MaxPoolGrad: missing input");
        let x = ctx.input(0)?.ok_or_else(missing)?;
        let dy = ctx.input(1)?.ok_or_else(missing)?;
        let (x_shape, x) = x.try_extract_tensor::<T>()?;
        let (dy_shape, dy) = dy.try_extract_tensor::<T>()?;
        let dims = |s: &[i64]| s.iter().map(|&d| d.max(0) as usize).collect::<Vec<_>>();
        let (xs, ys) = (dims(x_shape), dims(dy_shape));
        let mut out = ctx
            .output(0, x_shape.to_vec())?
            .ok_or_else(|| ort::Error::new("MaxPoolGrad: no output"))?;
        let (_, dx) = out.try_extract_tensor_mut::<T>()?;
        // Check the whole call once, then split the planes ([N·C]) over the session's threads.
        let r = self.geometry.kernel.len();
        if xs.len() != r + 2 || ys.len() != r + 2 || xs[..2] != ys[..2] {
            return max_pool_grad(x, &xs, dy, &ys, &self.geometry, self.relu, dx)
                .map_err(ort::Error::new);
        }
        let planes = xs[0] * xs[1];
        let (plane_in, plane_out) = (
            xs[2..].iter().product::<usize>(),
            ys[2..].iter().product::<usize>(),
        );
        let tasks = planes.clamp(1, TASKS);
        if tasks < 2 || x.len() != planes * plane_in || dy.len() != planes * plane_out {
            return max_pool_grad(x, &xs, dy, &ys, &self.geometry, self.relu, dx)
                .map_err(ort::Error::new);
        }
        let shared = Shared(dx.as_mut_ptr(), dx.len());
        let out = &shared;
        let failed = std::sync::Mutex::new(None);
        let (geometry, relu) = (&self.geometry, self.relu);
        ctx.par_for(tasks, tasks, |task| {
            let (p0, p1) = (planes * task / tasks, planes * (task + 1) / tasks);
            let n = p1 - p0;
            let (mut sx, mut sy) = (xs.clone(), ys.clone());
            (sx[0], sx[1], sy[0], sy[1]) = (n, 1, n, 1);
            // SAFETY: `out` is `dx`, alive for this call; task ranges are disjoint, so no two
            // tasks write the same elements.
            let dx = unsafe { out.range(p0 * plane_in, n * plane_in) };
            let done = max_pool_grad(
                &x[p0 * plane_in..p1 * plane_in],
                &sx,
                &dy[p0 * plane_out..p1 * plane_out],
                &sy,
                geometry,
                relu,
                dx,
            );
            if let Err(e) = done {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        })?;
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(ort::Error::new(e)),
            None => Ok(()),
        }
    }
}

/// `ai.vog.ConvInputGrad(dY, W, XShape) -> dX` for one element type.
struct ConvInputGrad<T>(PhantomData<T>);

impl<T: Typed> Operator for ConvInputGrad<T> {
    type Kernel<'attr> = ConvInputGradKernel<T>;

    fn name(&self) -> &str {
        vog_onnx::CONV_INPUT_GRAD
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        [
            OperatorInput::required(T::TYPE),
            OperatorInput::required(T::TYPE),
            OperatorInput::required(TensorElementType::Int64),
        ]
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(T::TYPE)]
    }

    fn create_kernel<'attr>(&self, ctx: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
        let pads = ctx
            .get::<Vec<i64>>("pads")
            .ok_or_else(|| ort::Error::new("ConvInputGrad: no pads attribute"))?;
        if pads.len() != 4 || pads.iter().any(|&p| p < 0) {
            return Err(ort::Error::new(format!(
                "ConvInputGrad: pads {pads:?} are not four non-negative values"
            )));
        }
        Ok(ConvInputGradKernel {
            pads: pads.iter().map(|&p| p as usize).collect(),
            _t: PhantomData,
        })
    }
}

struct ConvInputGradKernel<T> {
    pads: Vec<usize>,
    _t: PhantomData<T>,
}

impl<T: Typed> Kernel for ConvInputGradKernel<T> {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let missing = || ort::Error::new("ConvInputGrad: missing input");
        let dy = ctx.input(0)?.ok_or_else(missing)?;
        let w = ctx.input(1)?.ok_or_else(missing)?;
        let xs = ctx.input(2)?.ok_or_else(missing)?;
        let (dy_shape, dy) = dy.try_extract_tensor::<T>()?;
        let (w_shape, w) = w.try_extract_tensor::<T>()?;
        let (_, xs) = xs.try_extract_tensor::<i64>()?;
        let dims = |s: &[i64]| s.iter().map(|&d| d.max(0) as usize).collect::<Vec<_>>();
        let x_shape = dims(xs);
        let k = vog_onnx::kernels::ConvInputGrad::new(
            &dims(dy_shape),
            &dims(w_shape),
            &x_shape,
            &self.pads,
        )
        .map_err(ort::Error::new)?;
        let mut out = ctx
            .output(0, xs.to_vec())?
            .ok_or_else(|| ort::Error::new("ConvInputGrad: no output"))?;
        let (_, dx) = out.try_extract_tensor_mut::<T>()?;
        let (per_dy, per_dx) = k.per_example();
        if k.n == 0 || per_dx == 0 {
            return Ok(());
        }
        if per_dy == 0 || dy.len() != k.n * per_dy || dx.len() != k.n * per_dx {
            return Err(ort::Error::new(
                "ConvInputGrad: buffer lengths do not match the shapes",
            ));
        }
        // Examples split over the session's threads.
        let tasks = k.n.clamp(1, TASKS);
        let shared = Shared(dx.as_mut_ptr(), dx.len());
        let out = &shared;
        ctx.par_for(tasks, tasks, |task| {
            let (e0, e1) = (k.n * task / tasks, k.n * (task + 1) / tasks);
            // SAFETY: `out` is `dx`, alive for this call; task ranges are disjoint, so no two
            // tasks write the same elements.
            let dx = unsafe { out.range(e0 * per_dx, (e1 - e0) * per_dx) };
            k.run(&dy[e0 * per_dy..e1 * per_dy], w, dx);
        })?;
        Ok(())
    }
}

/// `ai.vog.ReluGrad(dY, Y) -> dX` for one element type.
struct ReluGrad<T>(PhantomData<T>);

impl<T: Typed> Operator for ReluGrad<T> {
    type Kernel<'attr> = ReluGradKernel<T>;

    fn name(&self) -> &str {
        vog_onnx::RELU_GRAD
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        [
            OperatorInput::required(T::TYPE),
            OperatorInput::required(T::TYPE),
        ]
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(T::TYPE)]
    }

    fn create_kernel<'attr>(&self, _: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
        Ok(ReluGradKernel(PhantomData))
    }
}

struct ReluGradKernel<T>(PhantomData<T>);

/// Values handed to one task of ONNX Runtime's thread pool at least (smaller tensors run on the
/// calling thread).
const RELU_GRAD_GRAIN: usize = 1 << 15;

impl<T: Typed> Kernel for ReluGradKernel<T> {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let missing = || ort::Error::new("ReluGrad: missing input");
        let dy = ctx.input(0)?.ok_or_else(missing)?;
        let y = ctx.input(1)?.ok_or_else(missing)?;
        let (dy_shape, dy) = dy.try_extract_tensor::<T>()?;
        let (y_shape, y) = y.try_extract_tensor::<T>()?;
        if dy_shape != y_shape {
            return Err(ort::Error::new(format!(
                "ReluGrad: dY is shaped {dy_shape:?} and Y {y_shape:?}; they must be equal"
            )));
        }
        let mut out = ctx
            .output(0, y_shape.to_vec())?
            .ok_or_else(|| ort::Error::new("ReluGrad: no output"))?;
        let (_, dx) = out.try_extract_tensor_mut::<T>()?;
        let len = dx.len();
        let tasks = (len / RELU_GRAD_GRAIN).clamp(1, TASKS);
        if tasks < 2 || dy.len() != len || y.len() != len {
            return relu_grad(dy, y, dx).map_err(ort::Error::new);
        }
        let shared = Shared(dx.as_mut_ptr(), len);
        let out = &shared;
        ctx.par_for(tasks, tasks, |task| {
            let (a, b) = (len * task / tasks, len * (task + 1) / tasks);
            // SAFETY: `out` is `dx`, alive for this call; task ranges are disjoint, so no two
            // tasks write the same elements.
            let dx = unsafe { out.range(a, b - a) };
            relu_grad(&dy[a..b], &y[a..b], dx).expect("equal lengths, checked above");
        })?;
        Ok(())
    }
}
