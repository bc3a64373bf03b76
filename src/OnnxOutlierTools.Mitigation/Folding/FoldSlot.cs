using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Folding;

/// <summary>Which axis of a stored tensor a per-channel vector multiplies (ScaledTensor's rows: every axis but the last).</summary>
internal enum FoldAxis { Rows, Columns }

/// <summary>One constant a fold edits, named by the node input that reads it (not by the value: an earlier fold may have
/// given that input a copy), and the axis the site's channels run along.</summary>
internal sealed record FoldSlot(Node Node, int Input, FoldAxis Axis)
{
    public Value Current => Node.Inputs[Input] ?? throw new InvalidOperationException($"{Node.Describe()} input {Input} is empty");

    /// <summary>The slot reading <paramref name="value"/> among <paramref name="owners"/>; null when none does.</summary>
    public static FoldSlot? Find(Value value, IEnumerable<Node> owners, FoldAxis axis)
    {
        foreach (var node in owners)
            for (int i = 0; i < node.Inputs.Count; i++)
                if (node.Inputs[i] == value) return new FoldSlot(node, i, axis);
        return null;
    }

    /// <summary>The data of a constant value: an initializer's, or a Constant node's.</summary>
    public static Tensor? Data(Value value)
    {
        if (value.ConstValue is { } t && !value.IsGraphInput) return t;
        if (value.Producer is { } p && p.Is("Constant") && p.GetAttribute("value") is { } attr)
        {
            try { return attr.AsTensor(); }
            catch (Exception e) when (e is InvalidOperationException or TensorFormatException) { return null; }
        }
        return null;
    }

    /// <summary>Length of the axis the channels run along.</summary>
    public static long AxisLength(Tensor tensor, FoldAxis axis) =>
        tensor.Dims.Count == 0 ? 0 : axis == FoldAxis.Columns ? tensor.Dims[^1] : tensor.ElementCount / Math.Max(1, tensor.Dims[^1]);

    /// <summary>Multiplies the constant this slot reads by <paramref name="scale"/> along its axis, through the folding kernel.
    /// Edited in place only when this slot is its one use and it is not listed as shared; otherwise the slot gets a new
    /// initializer (copy-on-write), so every other reader keeps the original.</summary>
    public void Apply(Graph graph, NameAuthority names, IReadOnlySet<Value> shared, double[] scale)
    {
        var value = Current;
        var data = Data(value) ?? throw new InvalidOperationException($"'{value.Name}' ({Node.Describe()} input {Input}) is not a constant");
        var scaled = Axis == FoldAxis.Rows ? ScaledTensor.ScaleRows(data, scale) : ScaledTensor.ScaleColumns(data, scale);
        bool alone = value.IsInitializer && !value.IsGraphInput && value.Graph == graph && value.Uses.Count == 1 && !shared.Contains(value);
        if (alone)
        {
            graph.SetInitializerData(value, scaled);
            return;
        }
        var copy = graph.AddInitializer(names.NewValueName(value.Name + ".folded"), scaled);
        Node.ReplaceInput(Input, copy);
    }
}
