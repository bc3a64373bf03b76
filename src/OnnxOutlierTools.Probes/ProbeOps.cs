using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Probes;

/// <summary>Default-domain ops written for the model's own opset (no opset is raised): reduction axes are an
/// attribute before opset 18 (ReduceSum: 13) and an input from then on; Unsqueeze/Squeeze axes likewise from 13;
/// Slice and TopK take inputs (opset 11 is the minimum: negative axes, TopK's largest). Every node goes through one <see cref="GraphEditor"/>,
/// so it carries the probe's provenance.</summary>
internal sealed class ProbeOps
{
    private readonly GraphEditor _editor;

    public ProbeOps(GraphEditor editor, long opset)
    {
        if (opset < 11) throw new NotSupportedException($"probes need default-domain opset 11 or later (TopK with a computed k, negative axes); the model imports opset {opset}");
        _editor = editor;
        Opset = opset;
    }

    public long Opset { get; }
    public GraphEditor Editor => _editor;

    public Value Op(string op, params Value?[] inputs) => _editor.Op(op, inputs);

    public Value Op(string op, Value?[] inputs, params Attr[] attributes) => _editor.Add(op, inputs, attributes)[0]!;

    public Value Cast(Value x, TensorDataType to) => Op("Cast", [x], Attr.Int("to", (long)to));

    /// <summary>x as FLOAT: a Cast unless x is known to be FLOAT already.</summary>
    public Value Float(Value x) => x.ElementType == TensorDataType.Float ? x : Cast(x, TensorDataType.Float);

    public Value Int64s(params long[] values) => _editor.Constant(ArrayTensor.Create<long>(values, values.Length), "probe_const");
    public Value Int64Scalar(long value) => _editor.Constant(ArrayTensor.Create<long>([value]), "probe_const");
    public Value FloatScalar(float value) => _editor.Constant(ArrayTensor.Create<float>([value]), "probe_const");

    /// <summary>ReduceMax, ReduceMin, ReduceSum, ReduceSumSquare over <paramref name="axes"/>.</summary>
    public Value Reduce(string op, Value x, long[] axes, bool keepDims = false)
    {
        long inputFrom = op == "ReduceSum" ? 13 : 18;
        var keep = Attr.Int("keepdims", keepDims ? 1 : 0);
        return Opset >= inputFrom
            ? Op(op, [x, Int64s(axes)], keep)
            : Op(op, [x], Attr.Ints("axes", axes), keep);
    }

    public Value Unsqueeze(Value x, params long[] axes) =>
        Opset >= 13 ? Op("Unsqueeze", x, Int64s(axes)) : Op("Unsqueeze", [x], Attr.Ints("axes", axes));

    public Value Slice(Value x, long[] starts, long[] ends, long[] axes) =>
        Op("Slice", x, Int64s(starts), Int64s(ends), Int64s(axes));

    /// <summary>Slice with computed bounds (1-D int64 values).</summary>
    public Value Slice(Value x, Value starts, Value ends, long[] axes) => Op("Slice", x, starts, ends, Int64s(axes));

    /// <summary>The k largest along <paramref name="axis"/>: values and int64 indices, descending when
    /// <paramref name="sorted"/> (unsorted is a selection without the sort, for a median that only needs the k-th).</summary>
    public (Value Values, Value Indices) TopK(Value x, Value k, long axis, bool sorted = true)
    {
        var attributes = new List<Attr> { Attr.Int("axis", axis), Attr.Int("largest", 1), Attr.Int("sorted", sorted ? 1 : 0) };
        var outputs = _editor.Add("TopK", [x, k], attributes, "probe_topk_values", "probe_topk_indices");
        return (outputs[0]!, outputs[1]!);
    }

    public Value Reshape(Value x, params long[] shape) => Op("Reshape", x, Int64s(shape));

    public Value Transpose(Value x, params long[] perm) => Op("Transpose", [x], Attr.Ints("perm", perm));

    /// <summary>Dimension <paramref name="axis"/> of x as a 1-D [1] int64 (negative axes count from the end).</summary>
    public Value Dim(Value x, long axis) => Axis1D(Op("Shape", x), axis);

    /// <summary>Element <paramref name="axis"/> of a 1-D shape as a [1] int64.</summary>
    public Value Axis1D(Value shape, long axis) => Slice(shape, [axis], [axis == -1 ? long.MaxValue : axis + 1], [0]);

    /// <summary>Dimension <paramref name="axis"/> of x as a scalar int64 (for Range).</summary>
    public Value DimScalar(Value x, long axis) => Op("Gather", [Op("Shape", x), Int64Scalar(axis)], Attr.Int("axis", 0));
}
