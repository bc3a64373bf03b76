using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Probes;

/// <summary>Rewrites a recognized model so that it computes compact statistics of its own activations as extra graph
/// outputs, appended after the original outputs (which keep their order): for every point
/// <see cref="ProbePlacement.Plan"/> places, the reductions of <see cref="StatisticReductions"/> (twelve outputs per
/// activation point, one <see cref="ProbeStatistic.AttentionMass"/> per attention point), named as
/// <see cref="ProbeNames"/> documents. Unemitted skip-norm residual sums are materialized as node outputs first. Every
/// node added carries provenance <c>onnx_outliers.pass = probe</c>, <c>onnx_outliers.rule = KIND</c>. The result counts
/// the points per kind (rules <see cref="ProbeNames.AllRules"/>) and lists the skipped points; <see cref="Manifest"/>
/// says where each statistic is.
/// <para>Only a structure recognized in the main graph can be probed (a decoder nested in BeamSearch or an If branch
/// cannot add model outputs).</para></summary>
public sealed class ProbePass : GraphPass
{
    private readonly ModelStructure _structure;
    private readonly string? _modelLabel;

    /// <param name="structure">The structure recognized in the model the pass runs on (<c>StructureRecognizer.Recognize</c>).</param>
    /// <param name="settings">Kinds, extra tensors, top-k size, attention positions, threshold.</param>
    /// <param name="modelLabel">The model as the user named it, for the manifest (default: the file it was loaded from).</param>
    public ProbePass(ModelStructure structure, ProbeSettings? settings = null, string? modelLabel = null)
        : base(ProbeNames.Pass, GraphScope.MainGraphOnly, ProbeNames.AllRules)
    {
        ArgumentNullException.ThrowIfNull(structure);
        settings ??= new ProbeSettings();
        if (settings.TopK < 1) throw new ArgumentOutOfRangeException(nameof(settings), settings.TopK, "TopK must be at least 1");
        if (settings.AttentionPositions < 1) throw new ArgumentOutOfRangeException(nameof(settings), settings.AttentionPositions, "AttentionPositions must be at least 1");
        if (!float.IsFinite(settings.AboveThreshold) || settings.AboveThreshold < 0) throw new ArgumentOutOfRangeException(nameof(settings), settings.AboveThreshold, "AboveThreshold must be finite and non-negative");
        _structure = structure;
        Settings = settings;
        _modelLabel = modelLabel;
    }

    public ProbeSettings Settings { get; }

    /// <summary>The manifest of the last run (null before the pass ran).</summary>
    public ProbeManifest? Manifest { get; private set; }

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        if (_structure.NestedIn is { } nested)
            throw new NotSupportedException($"the recognized blocks are in a nested graph ({nested}); probes add model outputs, so they need the blocks in the main graph");
        if (!ReferenceEquals(graph, _structure.Graph))
            throw new InvalidOperationException("the structure was recognized on another model (recognize the model the pass runs on)");
        long opset = context.Model.OpsetVersion("") ?? throw new InvalidOperationException("the model imports no default-domain opset");
        var (planned, skipped) = ProbePlacement.Plan(_structure, Settings);
        var originalOutputs = graph.Outputs.Select(o => o.Name).ToArray();
        var points = new ProbePoint[planned.Count];
        // Deepest point first: ORT's default execution order is a reverse DFS from the graph's leaf nodes, taking the
        // last leaf first, so probes appended shallow-to-deep would all run after the whole model (every probed tensor
        // alive to the end: +60% peak memory and cold caches on a dim-1024 decoder), while deepest-first makes each
        // probe run as soon as its point is computed.
        for (int i = planned.Count - 1; i >= 0; i--)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            var plan = planned[i];
            var ops = new ProbeOps(context.Model.Edit(graph, new NodeOrigin(ProbeNames.Pass, plan.Kind.Rule())), opset);
            points[i] = plan.Kind == ProbeKind.AttentionProbabilities
                ? AddAttention(ops, plan, context.Names)
                : AddActivation(ops, plan, context.Names);
            recorder.Count(plan.Kind.Rule());
        }
        foreach (var s in skipped) recorder.Skip(s.Kind.Rule(), s.Reason, graph, s.Id);
        Manifest = new ProbeManifest
        {
            Model = _modelLabel ?? context.Model.SourcePath ?? "",
            Settings = Settings,
            Points = points,
            Skipped = skipped,
            OriginalOutputs = originalOutputs,
        };
    }

    private ProbePoint AddActivation(ProbeOps ops, PlannedProbe plan, NameAuthority names)
    {
        var x = Materialize(plan.Tensor!, names, plan.Id);
        var statistics = StatisticReductions.Activation(ops, x, plan.Channels, Settings);
        var outputs = new Dictionary<ProbeStatistic, string>();
        foreach (var statistic in ProbeNames.ActivationStatistics)
        {
            IReadOnlyList<Dim> dims = statistic switch
            {
                ProbeStatistic.TokenMaxAbs or ProbeStatistic.TokenMedianAbs or ProbeStatistic.TokenArgMaxChannel => [Dim.Unknown],
                ProbeStatistic.TopKAbs or ProbeStatistic.TopKIndex or ProbeStatistic.TopKValue => [Dim.Unknown],
                _ => [plan.Channels is long c ? new Dim(c) : Dim.Unknown],
            };
            var type = statistic is ProbeStatistic.TokenArgMaxChannel or ProbeStatistic.TopKIndex ? TensorDataType.Int64 : TensorDataType.Float;
            outputs[statistic] = Emit(ops, statistics[statistic], plan.Id, statistic, type, dims);
        }
        return Point(plan, x.Name, outputs);
    }

    private ProbePoint AddAttention(ProbeOps ops, PlannedProbe plan, NameAuthority names)
    {
        Value probabilities;
        string source;
        if (plan.Tensor is { } tensor)
        {
            probabilities = Materialize(tensor, names, plan.Id);
            source = "softmax";
        }
        else (probabilities, source) = FusedAttentionProbabilities.Build(ops, plan.Attention!, _structure.Architecture == ModelArchitecture.Decoder);
        var mass = StatisticReductions.AttentionMass(ops, probabilities, Settings.AttentionPositions);
        Dim heads = plan.Heads is int h ? new Dim(h) : Dim.Unknown;
        string output = Emit(ops, mass, plan.Id, ProbeStatistic.AttentionMass, TensorDataType.Float, [Dim.Unknown, heads, Dim.Unknown]);
        return Point(plan, probabilities.Name, new Dictionary<ProbeStatistic, string> { [ProbeStatistic.AttentionMass] = output }) with { Source = source };
    }

    private static ProbePoint Point(PlannedProbe plan, string tensor, Dictionary<ProbeStatistic, string> outputs) => new()
    {
        Id = plan.Id,
        Kind = plan.Kind,
        Block = plan.Block,
        Role = plan.Role,
        Tensor = tensor,
        Channels = plan.Kind == ProbeKind.AttentionProbabilities ? null : plan.Channels,
        Heads = plan.Heads,
        ReadBy = plan.ReadBy,
        Outputs = outputs,
        AlsoAs = plan.AlsoAs.ToArray(),
    };

    /// <summary>The value of <paramref name="tensor"/>; a fused node's unemitted output is created (named after the point).</summary>
    private static Value Materialize(TensorRef tensor, NameAuthority names, string id) =>
        tensor.Value ?? tensor.Node!.EnsureOutput(tensor.OutputIndex, names, $"probe.{id}.tensor");

    /// <summary>Names the reduction's result as its output (through the name authority) and makes it a graph output.
    /// The result is renamed rather than copied by an Identity (one node fewer per statistic); every statistic is a
    /// value of its own, made by the probe, so no two outputs share a value.</summary>
    private static string Emit(ProbeOps ops, Value value, string id, ProbeStatistic statistic, TensorDataType type, IReadOnlyList<Dim>? dims)
    {
        if (value.Producer is null || NodeOrigin.Of(value.Producer)?.Pass != ProbeNames.Pass || ops.Editor.Graph.Outputs.Contains(value))
            throw new InvalidOperationException($"probe '{id}': statistic {statistic} is not a value of its own");
        value.Name = ops.Editor.Names.NewValueName(ProbeNames.Output(id, statistic));
        ops.Editor.Graph.AddOutput(value);
        value.SetTensorType(type, dims);
        return value.Name;
    }
}
