using System.Globalization;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Quantization.Common;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.W8A8;

/// <summary>How a W8A8 model quantizes the activations at a linear's input.</summary>
public enum ActivationMode
{
    /// <summary>One scale per tensor from calibration (max |x| / 127, or a percentile): QuantizeLinear/DequantizeLinear with a
    /// constant scale and zero point 0 in front of the float MatMul/Gemm, whose weight is DequantizeLinear(int8, per channel).
    /// ORT's QDQ fusion turns DQ-MatMul into MatMulIntegerToFloat / QLinearMatMul (int8 kernels).</summary>
    StaticPerTensor,
    /// <summary>One scale per token computed in the graph (ReduceMax(|x|) over the channels / 127), q = Cast(Clip(Round(x / s)))
    /// on the symmetric int8 grid (stored as uint8 + 128, zero point 128, for ORT's u8 x s8 CPU kernels), MatMulInteger with the
    /// int8 weight (int32 accumulation), then y = float(acc) * s_token * s_channel.</summary>
    DynamicPerToken,
}

/// <summary>The W8A8 rewrite of the selected sites (main graph): int8 symmetric weights per output channel (lazy
/// <see cref="Int8ChannelTensor"/> initializers: the float weight is read chunk by chunk when the model is saved) and int8
/// activations at every selected linear's input, by <see cref="ActivationMode"/>. Every node carries the scheme's provenance
/// (pass name, rule). The original float weights are removed when nothing else reads them (a tied embedding keeps its table).
/// Rules: <c>weight-dq</c> (DequantizeLinear weights), <c>activation-qdq</c> (static Q/DQ pairs), <c>dynamic-int8-matmul</c>
/// (per-token MatMulInteger linears), <c>attention-matmul</c> (Q K^T and P V of decomposed attention), <c>embedding</c>.</summary>
internal sealed class W8A8Pass : GraphPass
{
    public const string WeightRule = "weight-dq", StaticRule = "activation-qdq", DynamicRule = "dynamic-int8-matmul",
        AttentionRule = "attention-matmul", EmbeddingRule = "embedding";

    private readonly ModelStructure _structure;
    private readonly IReadOnlyList<QuantizationSite> _sites;
    private readonly IReadOnlyDictionary<string, ActivationRange> _ranges;
    private readonly EmbeddingRole? _embedding;
    private readonly IReadOnlyList<AttentionMatMul> _attention;
    private readonly Dictionary<Value, QuantizedWeight> _weights = [];
    private readonly List<QuantizedSiteReport> _reports = [];

    public W8A8Pass(string name, ModelStructure structure, ActivationMode mode, IReadOnlyList<QuantizationSite> sites,
        IReadOnlyDictionary<string, ActivationRange> ranges, EmbeddingRole? embedding, IReadOnlyList<AttentionMatMul> attention)
        : base(name, GraphScope.MainGraphOnly, [WeightRule, StaticRule, DynamicRule, AttentionRule, EmbeddingRule])
    {
        _structure = structure;
        Mode = mode;
        _sites = sites;
        _ranges = ranges;
        _embedding = embedding;
        _attention = attention;
    }

    public ActivationMode Mode { get; }
    public IReadOnlyList<QuantizedSiteReport> Reports => _reports;

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        if (!ReferenceEquals(graph, _structure.Graph))
            throw new InvalidOperationException("the structure was recognized on another model (recognize the model the pass runs on)");
        long opset = context.Model.OpsetVersion("") ?? 1;
        var origin = new NodeOrigin(Name);
        var ops = new QuantOps(context.Model.Edit(graph, origin), opset);
        _reports.Clear();
        foreach (var site in _sites)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            _reports.Add(Mode == ActivationMode.StaticPerTensor ? StaticSite(site, ops, context, recorder) : DynamicSite(site, ops, context, recorder));
        }
        foreach (var matmul in _attention) _reports.Add(AttentionSite(matmul, ops, recorder));
        if (_embedding is { } embedding) _reports.Add(Embedding(embedding, ops, recorder));
        graph.RemoveDeadNodes();
        graph.TopologicalSort();
    }

    private QuantizedSiteReport StaticSite(QuantizationSite site, QuantOps root, PassContext context, PassRecorder recorder)
    {
        var range = _ranges[site.Input.Name];
        float scale = PerChannelInt8.ScaleOf(range.Range);
        var type = ComputeType(site.Linears[0].Linear);
        var ops = At(root, FirstConsumer(site), StaticRule);
        var x = type == TensorDataType.Float ? site.Input : ops.Cast(site.Input, TensorDataType.Float);
        var weightScales = new List<float>();
        foreach (var target in site.Linears)
        {
            var linear = target.Linear;
            var local = At(root, linear.Node, StaticRule);
            // One Q/DQ pair per linear, each with its own scale and zero-point initializers (same values): ORT's CPU fusion
            // converts an int8 Q/DQ pair to uint8 (its x86 kernels are u8 x s8) only when the Q has one DQ, and its common
            // subexpression elimination merges Q nodes with the same inputs, so a Q shared by q/k/v (or identical Qs on shared
            // constants) leaves q/k/v and gate/up as float MatMuls. Measured: 10 of 35 linears fused that way, 35 of 35 this way.
            var sl = local.FloatScalar($"{site.Id}.{target.Role}.input_scale", scale);
            var zl = local.Int8Scalar($"{site.Id}.{target.Role}.input_zero_point", 0);
            var dq = local.DequantizeLinear(local.QuantizeLinear(x, sl, zl), sl, zl);
            linear.Node.ReplaceInput(0, type == TensorDataType.Float ? dq : local.Cast(dq, type));
            recorder.Count(StaticRule);
            var weight = WeightDq(linear, root, recorder);
            weightScales.AddRange(weight.Scales);
        }
        string activation = $"static per-tensor, scale {Format(scale)} (range {Format(range.Range)}{(range.Percentile is double p ? $", p{Format(p)} of token max" : "")}; max |x| {Format(range.AbsMax)})";
        return Report(site, activation, weightScales, new() { ["inputScale"] = scale, ["inputRange"] = range.Range, ["inputAbsMax"] = range.AbsMax });
    }

    private QuantizedSiteReport DynamicSite(QuantizationSite site, QuantOps root, PassContext context, PassRecorder recorder)
    {
        var type = ComputeType(site.Linears[0].Linear);
        var ops = At(root, FirstConsumer(site), DynamicRule);
        var x = type == TensorDataType.Float ? site.Input : ops.Cast(site.Input, TensorDataType.Float);
        var (q, tokenScale, zeroPoint) = ops.DynamicSymmetricShifted(x, -1, site.Id + ".input");
        var weightScales = new List<float>();
        foreach (var target in site.Linears)
        {
            var linear = target.Linear;
            var local = At(root, linear.Node, DynamicRule);
            var weight = Int8Weight(linear, root);
            weightScales.AddRange(weight.Scales);
            // MatMulInteger reads B as [in, out]: an [out, in] weight is transposed once (ORT folds the Transpose of a constant at load).
            var b = linear.Layout == WeightLayout.OutIn ? local.Op("Transpose", [weight.Int8], Attr.Ints("perm", 1, 0)) : weight.Int8;
            var accumulated = local.Op("MatMulInteger", q, b, zeroPoint);
            var y = local.Op("Mul", local.Op("Mul", local.Cast(accumulated, TensorDataType.Float), tokenScale), weight.Scale);
            if (linear.Form == LinearForm.Gemm && linear.Node.Input(2) is { } bias)
                y = local.Op("Add", y, bias.ElementType is null or TensorDataType.Float ? bias : local.Cast(bias, TensorDataType.Float));
            if (type != TensorDataType.Float) y = local.Cast(y, type);
            TakeOver(linear.Node.Outputs[0]!, y, context.Names);
            recorder.Count(DynamicRule);
        }
        return Report(site, "dynamic per-token (scale = max |x| of the token / 127, computed in the graph)", weightScales, []);
    }

    private QuantizedSiteReport AttentionSite(AttentionMatMul matmul, QuantOps root, PassRecorder recorder)
    {
        var local = At(root, matmul.Node, AttentionRule);
        var figures = new Dictionary<string, double>();
        string activation;
        if (Mode == ActivationMode.StaticPerTensor)
        {
            var parts = new List<string>();
            for (int i = 0; i < 2; i++)
            {
                var input = matmul.Node.Input(i)!;
                var range = _ranges[input.Name];
                float scale = PerChannelInt8.ScaleOf(range.Range);
                var s = local.FloatScalar($"{matmul.Id}.input{i}_scale", scale);
                var zero = local.Int8Scalar($"{matmul.Id}.input{i}_zero_point", 0);
                matmul.Node.ReplaceInput(i, local.DequantizeLinear(local.QuantizeLinear(input, s, zero), s, zero));
                figures[$"input{i}Scale"] = scale;
                figures[$"input{i}Range"] = range.Range;
                parts.Add($"{(i == 0 ? "A" : "B")} scale {Format(scale)}");
            }
            activation = "static per-tensor, " + string.Join(", ", parts);
        }
        else
        {
            // A per row (its last axis), B per column (its second-to-last axis): the reduction axis of the product.
            var (qa, sa, za) = local.DynamicSymmetricShifted(matmul.Node.Input(0)!, -1, matmul.Id + ".a");
            var (qb, sb) = local.DynamicSymmetric(matmul.Node.Input(1)!, -2, matmul.Id + ".b");
            var y = local.Op("Mul", local.Op("Mul", local.Cast(local.Op("MatMulInteger", qa, qb, za), TensorDataType.Float), sa), sb);
            TakeOver(matmul.Node.Outputs[0]!, y, root.Editor.Names);
            activation = "dynamic: A per row, B per column (the reduction axis), MatMulInteger";
        }
        recorder.Count(AttentionRule);
        return new QuantizedSiteReport(matmul.Id, matmul.Block, matmul.Kind, [], activation, "none (both inputs are activations)") { Figures = figures };
    }

    private QuantizedSiteReport Embedding(EmbeddingRole embedding, QuantOps root, PassRecorder recorder)
    {
        var table = embedding.TokenTable;
        var source = table.ConstValue!;
        var scales = PerChannelInt8.Scales(source, 0);
        var local = At(root, embedding.Node, EmbeddingRule);
        var q = local.Editor.Initializer(table.Name + ".int8", new Int8ChannelTensor(source, scales, 0));
        var s = local.Floats(table.Name + ".scale", scales);
        var zero = local.Editor.Initializer(table.Name + ".zero_point", ArrayTensor.Zeros(TensorDataType.Int8, scales.Length));
        var dq = local.DequantizeLinear(q, s, zero, 0);
        var replacement = source.DataType == TensorDataType.Float ? dq : local.Cast(dq, source.DataType);
        for (int i = 0; i < embedding.Node.Inputs.Count; i++)
            if (ReferenceEquals(embedding.Node.Input(i), table)) embedding.Node.ReplaceInput(i, replacement);
        recorder.Count(EmbeddingRule);
        return new QuantizedSiteReport("embedding", null, "embedding", [table.Name], null, "int8 symmetric per row (token), dequantized before the Gather")
        {
            Figures = new Dictionary<string, double> { ["weightScaleMin"] = scales.Min(), ["weightScaleMax"] = scales.Max() },
        };
    }

    /// <summary>The linear's weight replaced by DequantizeLinear(int8, scale, 0, axis) (a Cast back to a 16-bit weight type),
    /// feeding the weight path where the float initializer did.</summary>
    private QuantizedWeight WeightDq(LinearRole linear, QuantOps root, PassRecorder recorder)
    {
        var weight = Int8Weight(linear, root);
        var reader = linear.WeightPath.Count > 0 ? linear.WeightPath[0] : linear.Node;
        var local = At(root, reader, WeightRule);
        var dq = local.DequantizeLinear(weight.Int8, weight.Scale, weight.ZeroPoint, weight.Axis);
        var replacement = weight.SourceType == TensorDataType.Float ? dq : local.Cast(dq, weight.SourceType);
        for (int i = 0; i < reader.Inputs.Count; i++)
            if (ReferenceEquals(reader.Input(i), linear.Weight)) reader.ReplaceInput(i, replacement);
        recorder.Count(WeightRule);
        return weight;
    }

    /// <summary>The int8 initializer, scales and zero points of a weight (made once, shared by linears reading the same weight).</summary>
    private QuantizedWeight Int8Weight(LinearRole linear, QuantOps root)
    {
        if (_weights.TryGetValue(linear.Weight, out var done)) return done;
        var source = linear.Weight.ConstValue!;
        int axis = linear.Layout == WeightLayout.InOut ? 1 : 0;
        var scales = PerChannelInt8.Scales(source, axis);
        var editor = root.Editor;
        var q = editor.Initializer(linear.Weight.Name + ".int8", new Int8ChannelTensor(source, scales, axis));
        var s = editor.Initializer(linear.Weight.Name + ".scale", ArrayTensor.Create<float>(scales, scales.Length));
        var zero = editor.Initializer(linear.Weight.Name + ".zero_point", ArrayTensor.Zeros(TensorDataType.Int8, scales.Length));
        return _weights[linear.Weight] = new QuantizedWeight(q, s, zero, axis, scales, source.DataType);
    }

    /// <summary>The element type the linear computes in: the weight's, or what a Cast on its path makes it.</summary>
    internal static TensorDataType ComputeType(LinearRole linear)
    {
        var cast = linear.WeightPath.LastOrDefault(n => n.OpType == "Cast");
        return cast is not null ? (TensorDataType)cast.GetInt("to", (long)TensorDataType.Float) : linear.Weight.ConstValue!.DataType;
    }

    /// <summary>Points every use of <paramref name="old"/> at <paramref name="replacement"/>; a graph output keeps its name
    /// and type (the model's interface does not change).</summary>
    private static void TakeOver(Value old, Value replacement, NameAuthority names)
    {
        bool output = old.IsGraphOutput;
        var (type, shape) = (old.ElementType, old.Shape);
        old.ReplaceAllUsesWith(replacement);
        if (!output) return;
        string name = old.Name;
        old.Name = names.NewValueName(name + ".float");
        replacement.Name = name;
        if (type is { } t) replacement.SetTensorType(t, shape);
    }

    private static Node FirstConsumer(QuantizationSite site)
    {
        var nodes = site.Linears.Select(l => l.Linear.Node).ToHashSet();
        return site.Linears[0].Linear.Node.Graph!.Nodes.First(nodes.Contains);
    }

    private QuantOps At(QuantOps root, Node before, string rule) =>
        root.With(root.Editor.InsertingBefore(before).WithOrigin(new NodeOrigin(Name, rule)));

    private static QuantizedSiteReport Report(QuantizationSite site, string activation, List<float> weightScales, Dictionary<string, double> figures)
    {
        figures["weightScaleMin"] = weightScales.Count == 0 ? double.NaN : weightScales.Min();
        figures["weightScaleMax"] = weightScales.Count == 0 ? double.NaN : weightScales.Max();
        return new QuantizedSiteReport(site.Id, site.Block, SiteKindName(site.Kind), site.Linears.Select(l => $"{l.Role} {l.Weight.Name}").ToArray(),
            activation, "int8 symmetric per output channel (DequantizeLinear axis)") { Figures = figures };
    }

    internal static string SiteKindName(SiteKind kind) => kind switch
    {
        SiteKind.Qkv => "qkv",
        SiteKind.AttentionOutput => "o",
        SiteKind.FfnInput => "ffn-in",
        SiteKind.Down => "down",
        SiteKind.LmHead => "lm-head",
        _ => "other",
    };

    private static string Format(double v) => v.ToString("G4", CultureInfo.InvariantCulture);

    private sealed record QuantizedWeight(Value Int8, Value Scale, Value ZeroPoint, int Axis, float[] Scales, TensorDataType SourceType);
}

/// <summary>The clipping range of one activation tensor: what the scale is made from, the tensor's max |x|, and the percentile
/// used (null: the max).</summary>
public sealed record ActivationRange(double Range, double AbsMax, double? Percentile);

/// <summary>One matmul of a decomposed attention with two activation inputs: Q K^T (scores) or P V (values);
/// <paramref name="ProbabilityInput"/>: its first input is the softmax probabilities (in [0, 1]).</summary>
public sealed record AttentionMatMul(string Id, int Block, string Kind, Node Node, bool ProbabilityInput);
