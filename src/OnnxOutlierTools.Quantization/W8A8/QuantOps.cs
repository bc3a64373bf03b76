using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.W8A8;

/// <summary>The default-domain ops the int8 rewrites write, for the model's own opset (13 at least: per-axis DequantizeLinear;
/// ReduceMax takes its axes as an input from opset 18). Constants are initializers (ORT's QDQ fusion wants constant scales
/// and zero points). Every node goes through one <see cref="GraphEditor"/>, so it carries the scheme's provenance.</summary>
internal sealed class QuantOps(GraphEditor editor, long opset)
{
    public const long MinimumOpset = 13;

    public GraphEditor Editor { get; } = editor;
    public long Opset { get; } = opset;

    public QuantOps With(GraphEditor editor) => new(editor, Opset);

    public Value Op(string op, params Value?[] inputs) => Editor.Op(op, inputs);
    public Value Op(string op, Value?[] inputs, params Attr[] attributes) => Editor.Add(op, inputs, attributes)[0]!;

    public Value Cast(Value x, TensorDataType to) => Op("Cast", [x], Attr.Int("to", (long)to));

    public Value FloatScalar(string name, float value) => Editor.Initializer(name, ArrayTensor.Create<float>([value]));
    public Value Int8Scalar(string name, sbyte value) => Editor.Initializer(name, ArrayTensor.Create<sbyte>([value]));
    public Value Floats(string name, float[] values) => Editor.Initializer(name, ArrayTensor.Create<float>(values, values.Length));
    public Value Int64s(string name, params long[] values) => Editor.Initializer(name, ArrayTensor.Create<long>(values, values.Length));

    public Value QuantizeLinear(Value x, Value scale, Value zeroPoint) => Op("QuantizeLinear", x, scale, zeroPoint);

    public Value DequantizeLinear(Value q, Value scale, Value zeroPoint, long? axis = null) =>
        axis is long a ? Op("DequantizeLinear", [q, scale, zeroPoint], Attr.Int("axis", a)) : Op("DequantizeLinear", q, scale, zeroPoint);

    /// <summary>ReduceMax over <paramref name="axis"/>, dimension kept.</summary>
    public Value ReduceMaxKeep(Value x, long axis, string name) =>
        Opset >= 18
            ? Op("ReduceMax", [x, Int64s(name + ".axes", axis)], Attr.Int("keepdims", 1))
            : Op("ReduceMax", [x], Attr.Ints("axes", axis), Attr.Int("keepdims", 1));

    /// <summary>Symmetric int8 of an fp32 tensor with a scale computed in the graph along <paramref name="axis"/> (every other
    /// axis keeps its own scale): s = max(ReduceMax(|x|, axis) / 127, tiny), q = Cast(Clip(Round(x / s), -127, 127), int8).
    /// QuantizeLinear cannot take such a scale before opset 21 (and ORT has no fused kernel for it), so it is spelled out.</summary>
    public (Value Q, Value Scale) DynamicSymmetric(Value x, long axis, string name)
    {
        var (clipped, scale) = DynamicGrid(x, axis, name);
        return (Cast(clipped, TensorDataType.Int8), scale);
    }

    /// <summary>The same symmetric int8 grid stored as uint8 with zero point 128 (q + 128 in [1, 255]): the form whose
    /// MatMulInteger ORT's CPU runs on its fast u8 x s8 kernels (s8 x s8 measured 4.2x slower than fp32 at dim 1024, u8 x s8
    /// faster than fp32). Returns the uint8 tensor, the scale and the uint8 zero point 128.</summary>
    public (Value Q, Value Scale, Value ZeroPoint) DynamicSymmetricShifted(Value x, long axis, string name)
    {
        var (clipped, scale) = DynamicGrid(x, axis, name);
        var shifted = Cast(Op("Add", clipped, FloatScalar(name + ".shift", 128)), TensorDataType.UInt8);
        return (shifted, scale, Editor.Initializer(name + ".zero_point", ArrayTensor.Create<byte>([128])));
    }

    private (Value Clipped, Value Scale) DynamicGrid(Value x, long axis, string name)
    {
        var max = ReduceMaxKeep(Op("Abs", x), axis, name);
        var scale = Op("Max", Op("Div", max, FloatScalar(name + ".qmax", PerChannelInt8.QMax)), FloatScalar(name + ".min_scale", MinScale));
        var rounded = Op("Round", Op("Div", x, scale));
        return (Op("Clip", rounded, FloatScalar(name + ".qmin", -PerChannelInt8.QMax), FloatScalar(name + ".qmax_clip", PerChannelInt8.QMax)), scale);
    }

    /// <summary>The smallest scale a dynamic row gets: a row of zeros (padding) must not divide by zero; 1e-30 keeps every
    /// representable fp32 row exact to its own max.</summary>
    public const float MinScale = 1e-30f;
}
