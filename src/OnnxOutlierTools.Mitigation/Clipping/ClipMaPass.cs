using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Clipping;

/// <summary><c>--clip-ma</c> (SCIENCE.md 2.4): at the down-projection input (y6) of the block where each massive
/// activation emerges, clamps the neurons that write it, for every token, to the calibrated bound of
/// <see cref="ClipMaPlan"/>: <c>Min(Max(y6, low), high)</c> with per-channel bound vectors broadcast over the tokens,
/// -inf / +inf on every other channel (those pass unchanged, bit for bit). Not function-preserving: the massive
/// activation is the model's attention sink, so its cost is measured (<see cref="Measurement.OutputDivergence"/>),
/// never assumed. Massive activations the pass cannot clip (born in attention or in the embedding, unknown neurons)
/// are listed as skipped with the reason.</summary>
public sealed class ClipMaPass : GraphPass
{
    public const string PassName = "clip-ma";

    private readonly ModelStructure _structure;
    private readonly AnalysisResult _analysis;
    private readonly CalibrationStatistics _statistics;

    public ClipMaPass(ModelStructure structure, AnalysisResult analysis, CalibrationStatistics statistics, ClipMaSettings? settings = null)
        : base(PassName, GraphScope.AllGraphs, [ClipMaPlan.Rule])
    {
        ArgumentNullException.ThrowIfNull(structure);
        ArgumentNullException.ThrowIfNull(analysis);
        ArgumentNullException.ThrowIfNull(statistics);
        Settings = settings ?? new ClipMaSettings();
        Settings.Validate();
        _structure = structure;
        _analysis = analysis;
        _statistics = statistics;
    }

    public ClipMaSettings Settings { get; }

    /// <summary>The clamps inserted by the last run (null before it ran).</summary>
    public IReadOnlyList<ClipSite>? Applied { get; private set; }

    /// <summary>The massive activations left alone, with the reason (null before it ran).</summary>
    public IReadOnlyList<ClipRefusal>? Refused { get; private set; }

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        if (!ReferenceEquals(graph, _structure.Graph)) return;
        var plan = ClipMaPlan.Create(_structure, _analysis, _statistics, Settings);
        foreach (var site in plan.Sites)
        {
            Insert(context.Model, graph, site);
            recorder.Count(ClipMaPlan.Rule);
        }
        foreach (var r in plan.Refusals) recorder.Skip(ClipMaPlan.Rule, $"massive channel {r.Channel}: {r.Reason}", graph, r.Block is int b ? $"block {b}" : null);
        Applied = plan.Sites;
        Refused = plan.Refusals;
    }

    private void Insert(Model model, Graph graph, ClipSite site)
    {
        var ffn = site.Ffn;
        var x = ffn.DownInput;
        var type = x.ElementType ?? ffn.Down.Weight.ConstValue?.DataType ?? TensorDataType.Float;
        long width = ffn.Down.InFeatures;
        var low = new float[width];
        var high = new float[width];
        Array.Fill(low, float.NegativeInfinity);
        Array.Fill(high, float.PositiveInfinity);
        foreach (var n in site.Neurons)
        {
            // Rounded outward to the activation's type, so the bound itself is never clipped.
            low[n.Neuron] = (float)-n.Clamp;
            high[n.Neuron] = (float)n.Clamp;
        }
        var edit = model.Edit(graph, new NodeOrigin(PassName, ClipMaPlan.Rule)).InsertingBefore(ffn.Down.Node);
        string stem = $"clip_ma_block{site.Block}";
        var lowValue = edit.Initializer(stem + "_low", Vector(low, type));
        var highValue = edit.Initializer(stem + "_high", Vector(high, type));
        var floored = edit.AddNode("Max", [x, lowValue], name: stem + "_max").Outputs[0]!;
        var clipped = edit.AddNode("Min", [floored, highValue], name: stem + "_min").Outputs[0]!;
        if (x.ElementType is { } t)
        {
            floored.SetTensorType(t, x.Shape);
            clipped.SetTensorType(t, x.Shape);
        }
        for (int i = 0; i < ffn.Down.Node.Inputs.Count; i++)
            if (ffn.Down.Node.Inputs[i] == x) ffn.Down.Node.ReplaceInput(i, clipped);
    }

    private static Tensor Vector(float[] values, TensorDataType type)
    {
        switch (type)
        {
            case TensorDataType.Float: return ArrayTensor.Create<float>(values, values.Length);
            case TensorDataType.Float16:
                var half = new Half[values.Length];
                for (int i = 0; i < values.Length; i++) half[i] = RoundOutward(values[i]);
                return ArrayTensor.Create<Half>(half, values.Length);
            case TensorDataType.BFloat16:
                var bf = new BFloat16[values.Length];
                FloatConversion.ToBFloat16(values, bf);
                return ArrayTensor.Create<BFloat16>(bf, values.Length);
            case TensorDataType.Double:
                return ArrayTensor.Create<double>(values.Select(v => (double)v).ToArray(), values.Length);
            default: throw new MitigationInputException($"the down-projection input is {type.OnnxName()}; clipping needs a floating-point activation");
        }
    }

    /// <summary>fp16 rounding away from zero: a bound never ends below the value it was computed from.</summary>
    private static Half RoundOutward(float v)
    {
        var h = (Half)v;
        if (float.IsInfinity(v) || (float)h == v || Math.Abs((float)h) >= Math.Abs(v)) return h;
        return v > 0 ? Half.BitIncrement(h) : Half.BitDecrement(h);
    }
}
