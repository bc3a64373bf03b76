using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Patterns;

/// <summary>A constant found behind a value: the defining value (initializer or Constant output) and its data.</summary>
public sealed record ConstantSource(Value Value, Tensor Tensor, IReadOnlyList<Node> PassThrough);

/// <summary>Finds the constant behind a value: an initializer (not also a graph input, which a caller
/// could override), a Constant node, looking through Cast/Identity (fp16 weights are often Cast).</summary>
public static class ConstantResolver
{
    public static ConstantSource? Resolve(Value value)
    {
        var through = new List<Node>();
        var v = value;
        for (int depth = 0; depth < 4; depth++)
        {
            if (v.ConstValue is not null && !v.IsGraphInput) return new ConstantSource(v, v.ConstValue, through);
            var node = v.Producer;
            if (node is null) return null;
            if (node.Is("Constant"))
            {
                var attr = node.GetAttribute("value");
                if (attr is null) return ScalarAttribute(node, v, through);
                try { return new ConstantSource(v, attr.AsTensor(), through); }
                catch (Exception ex) when (ex is InvalidOperationException or TensorFormatException) { return null; }
            }
            if (!(node.Is("Cast") || node.Is("Identity")) || node.Input(0) is not { } input) return null;
            through.Add(node);
            v = input;
        }
        return null;
    }

    /// <summary>Constant(value_float=...) and friends.</summary>
    private static ConstantSource? ScalarAttribute(Node node, Value v, List<Node> through)
    {
        if (node.GetAttribute("value_float") is { } f) return new ConstantSource(v, ArrayTensor.Create<float>([f.AsFloat()]), through);
        if (node.GetAttribute("value_int") is { } i) return new ConstantSource(v, ArrayTensor.Create<long>([i.AsInt()]), through);
        if (node.GetAttribute("value_floats") is { } fs) return new ConstantSource(v, ArrayTensor.Create<float>(fs.AsFloats().ToArray(), fs.AsFloats().Count), through);
        if (node.GetAttribute("value_ints") is { } ii) return new ConstantSource(v, ArrayTensor.Create<long>(ii.AsInts().ToArray(), ii.AsInts().Count), through);
        return null;
    }

    /// <summary>The single value of a one-element numeric constant as double, or null.</summary>
    public static double? Scalar(Tensor tensor)
    {
        if (tensor.ElementCount != 1) return null;
        return tensor.DataType switch
        {
            TensorDataType.Float => tensor.AsSpan<float>()[0],
            TensorDataType.Double => tensor.AsSpan<double>()[0],
            TensorDataType.Float16 => (double)tensor.AsSpan<Half>()[0],
            TensorDataType.BFloat16 => (float)tensor.AsSpan<BFloat16>()[0],
            TensorDataType.Int64 => tensor.AsSpan<long>()[0],
            TensorDataType.Int32 => tensor.AsSpan<int>()[0],
            _ => null,
        };
    }

    /// <summary>The value of a one-element constant, also when it is computed from constants by a few scalar
    /// ops (Sqrt, Reciprocal, Div, Mul, Pow, Cast: exporters compute 1/sqrt(head_size) that way).</summary>
    public static double? ScalarOf(Value value) => ScalarOf(value, 4);

    private static double? ScalarOf(Value value, int depth)
    {
        if (Resolve(value) is { } c) return Scalar(c.Tensor);
        if (depth == 0 || value.Producer is not { IsDefaultDomain: true } p) return null;
        double? Arg(int i) => p.Input(i) is { } v ? ScalarOf(v, depth - 1) : null;
        return p.OpType switch
        {
            "Sqrt" => Arg(0) is double a && a >= 0 ? Math.Sqrt(a) : null,
            "Reciprocal" => Arg(0) is double a && a != 0 ? 1 / a : null,
            "Cast" or "Identity" => Arg(0),
            "Div" => Arg(0) is double a && Arg(1) is double b && b != 0 ? a / b : null,
            "Mul" => Arg(0) is double a && Arg(1) is double b ? a * b : null,
            "Pow" => Arg(0) is double a && Arg(1) is double b ? Math.Pow(a, b) : null,
            _ => null,
        };
    }
}
