using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.SinkBias;

/// <summary>
/// The training-free explicit attention bias (SCIENCE.md 2.3, 2.7): stores the captured prefix keys and values as
/// initializers and rewrites every attention so that it sees them first. The rewritten model is fed the text WITHOUT the
/// prefix tokens and computes what the original computes on prefix + text:
/// <list type="bullet">
/// <item>KV-cache decoders (decomposed with past, GroupQueryAttention, MultiHeadAttention): each past input is replaced by
/// Concat(prefix, past) inside the graph; attention_mask gets P ones in front (so GroupQueryAttention's seqlens_k and
/// total_sequence_length and positions computed from the mask move with it); position_ids (and seqlens_k /
/// total_sequence_length fed as inputs) are shifted by P; every present output has the prefix sliced off, so any
/// runtime's KV loop (past = previous present, mask and positions over the text only) works unchanged.</item>
/// <item>Decomposed attention without a cache: the prefix is concatenated into K^T and V in front of the score and context
/// MatMuls, the mask joined to the scores gets P visible columns in front, position_ids are shifted by P.</item>
/// </list>
/// Rotary keys of the prefix are already rotated at positions 0..P-1, so the text's positions start at P. The changed
/// input contract is written to the model's metadata (<see cref="SinkContract"/>).
/// </summary>
public sealed class SinkBiasPass : GraphPass
{
    public const string PassName = "sink-bias";
    public const string PastRule = "prefix-past";
    public const string InlineRule = "prefix-inline";
    public const string MaskRule = "extend-mask";
    public const string PositionRule = "shift-positions";
    public const string PresentRule = "slice-present";

    private readonly ModelStructure _structure;
    private readonly CapturedSink _sink;

    public SinkBiasPass(ModelStructure structure, CapturedSink sink)
        : base(PassName, GraphScope.MainGraphOnly, [PastRule, InlineRule, MaskRule, PositionRule, PresentRule])
    {
        ArgumentNullException.ThrowIfNull(structure);
        ArgumentNullException.ThrowIfNull(sink);
        if (sink.Layers.Count != sink.Plan.Sites.Count) throw new ArgumentException($"{sink.Layers.Count} captured layers for {sink.Plan.Sites.Count} sites", nameof(sink));
        _structure = structure;
        _sink = sink;
    }

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        if (!ReferenceEquals(graph, _structure.Graph))
            throw new SinkBiasException($"{context.Model.SourcePath ?? graph.Name}: the structure and the captured sink belong to another model than the one the pass runs on");
        if (context.Model.Metadata.Any(m => m.Key == SinkContract.PrefixKey))
            throw new SinkBiasException($"{context.Model.SourcePath ?? graph.Name}: the model already has a baked sink prefix ({SinkContract.PrefixKey})");
        var plan = _sink.Plan;
        long p = _sink.Length;
        for (int i = 0; i < plan.Sites.Count; i++)
        {
            var site = plan.Sites[i];
            var layer = _sink.Layers[i];
            var edit = context.Model.Edit(graph, new NodeOrigin(Name, plan.Form == SinkForm.Cache ? PastRule : InlineRule));
            var key = edit.Initializer($"sink_bias.layers.{site.Block}.key", layer.Key);
            var value = edit.Initializer($"sink_bias.layers.{site.Block}.value", layer.Value);
            if (plan.Form == SinkForm.Cache)
            {
                PrependAtAllUses(edit, site.Key, key, axis: 2);
                PrependAtAllUses(edit, site.Value, value, axis: 2);
                recorder.Count(PastRule);
                var slice = edit.WithOrigin(new NodeOrigin(Name, PresentRule));
                SliceOffPrefix(slice, graph, site.PresentKey!, p);
                SliceOffPrefix(slice, graph, site.PresentValue!, p);
                recorder.Count(PresentRule, 2);
            }
            else
            {
                site.ScoreMatMul!.ReplaceInput(1, Prepend(edit, key, site.Key, axis: 3));
                site.ContextMatMul!.ReplaceInput(1, Prepend(edit, value, site.Value, axis: 2));
                recorder.Count(InlineRule);
            }
        }

        if (plan.Form == SinkForm.Inline) ExtendScoreMasks(context, graph, plan, p, recorder);
        else if (plan.AttentionMask is { } mask)
        {
            var edit = context.Model.Edit(graph, new NodeOrigin(Name, MaskRule));
            var uses = UsesOf(mask);
            var ones = Fill(edit, mask, mask.ElementType ?? TensorDataType.Int64, leading: 1, p, 1);
            Rewire(uses, edit.AddNode("Concat", [ones, mask], [Attr.Int("axis", 1)]).Outputs[0]!);
            recorder.Count(MaskRule);
        }
        var shift = context.Model.Edit(graph, new NodeOrigin(Name, PositionRule));
        foreach (var input in new[] { plan.PositionIds, plan.SeqLensK, plan.TotalSequenceLength })
        {
            if (input is null) continue;
            var uses = UsesOf(input);
            var shifted = shift.Op("Add", input, shift.Constant(ScalarOf(input.ElementType ?? TensorDataType.Int64, p, rank1: false)));
            Rewire(uses, shifted);
            if (input == plan.PositionIds)
                foreach (var gather in shifted.Consumers.Where(n => n.Is("Gather") && n.Input(1) == shifted).ToList())
                    LengthenTable(context.Model.Edit(graph, new NodeOrigin(Name, PositionRule)), gather, p);
            recorder.Count(PositionRule);
        }
        graph.TopologicalSort();
        SinkContract.Write(context.Model, _sink);
    }

    /// <summary>Hugging Face's rotary embedding slices its tables to the fed length before gathering them by position
    /// (<c>cos_cached[:seq_len][position_ids]</c>, torch.onnx exports without a cache); with positions shifted by P the
    /// slice must keep P rows more. A Slice of a constant table with a computed end (behind Cast/Squeeze/Unsqueeze) in front
    /// of a Gather by the shifted positions gets its end moved by P. (Found by a second implementation of this pass, which
    /// failed on exports/llama-torch-nopast without it.)</summary>
    private static void LengthenTable(GraphEditor edit, Node gather, long p)
    {
        var producer = gather.Input(0)?.Producer;
        while (producer is not null && (producer.Is("Cast") || producer.Is("Squeeze") || producer.Is("Unsqueeze"))) producer = producer.Input(0)?.Producer;
        if (producer is null || !producer.Is("Slice") || producer.Input(2) is not { } ends || ends.IsInitializer || ends.Producer is null or { OpType: "Constant" }) return;
        if (producer.Input(0) is not { } table || !(table.IsInitializer || table.Producer is { OpType: "Constant" })) return;
        var at = edit.InsertingBefore(producer);
        producer.ReplaceInput(2, at.Op("Add", ends, at.Constant(ScalarOf(ends.ElementType ?? TensorDataType.Int64, p, rank1: true))));
    }

    /// <summary>Every use of <paramref name="target"/> now reads Concat(prefix expanded to its batch, target).</summary>
    private static void PrependAtAllUses(GraphEditor edit, Value target, Value prefix, int axis)
    {
        var uses = UsesOf(target);
        Rewire(uses, Prepend(edit, prefix, target, axis));
    }

    /// <summary>Concat(Expand(prefix [1, ...], [batch of target, 1, ...]), target) along <paramref name="axis"/>.</summary>
    private static Value Prepend(GraphEditor edit, Value prefix, Value target, int axis)
    {
        int rank = prefix.ConstValue!.Dims.Count;
        var batch = edit.Op("Slice", edit.Op("Shape", target), edit.Constant(I64(0)), edit.Constant(I64(1)));
        var shape = edit.AddNode("Concat", [batch, edit.Constant(I64(Enumerable.Repeat(1L, rank - 1).ToArray()))], [Attr.Int("axis", 0)]).Outputs[0]!;
        var expanded = edit.Op("Expand", prefix, shape);
        return edit.AddNode("Concat", [expanded, target], [Attr.Int("axis", axis)]).Outputs[0]!;
    }

    /// <summary>The graph output <paramref name="present"/> becomes Slice(present, P:, axis 2) under the same name, so the
    /// cache a runtime feeds back holds the text only (the graph adds the prefix again on the next step).</summary>
    private static void SliceOffPrefix(GraphEditor edit, Graph graph, Value present, long p)
    {
        var sliced = edit.Op("Slice", present, edit.Constant(I64(p)), edit.Constant(I64(long.MaxValue)), edit.Constant(I64(2)));
        string name = present.Name;
        var type = present.Type;
        present.Name = edit.Names.NewValueName(name + ".with_sink");
        sliced.Name = name;
        for (int i = 0; i < graph.Outputs.Count; i++)
            if (graph.Outputs[i] == present) graph.SetOutput(i, sliced);
        if (type is not null) sliced.Type = type;
    }

    /// <summary>Inline form: at every node joining a mask to the scores, the mask gets P columns in front that keep the
    /// prefix visible (zeros for an additive mask, the keeping value for a Where condition). A mask shared by several layers
    /// is extended once.</summary>
    private void ExtendScoreMasks(PassContext context, Graph graph, SinkPlan plan, long p, PassRecorder recorder)
    {
        var edit = context.Model.Edit(graph, new NodeOrigin(Name, MaskRule));
        var extended = new Dictionary<(Value, double), Value>();
        foreach (var site in plan.Sites)
            foreach (var (node, index, keep) in site.MaskJoins)
            {
                var mask = node.Inputs[index]!;
                if (!extended.TryGetValue((mask, keep), out var value))
                {
                    // Without a declared type: a Where condition is bool, an additive mask has the scores' type (the model's).
                    var type = mask.ElementType ?? (node.Is("Where") ? TensorDataType.Bool : _sink.Layers[0].Key.DataType);
                    var fill = Fill(edit, mask, type, leading: -1, p, keep);
                    value = edit.AddNode("Concat", [fill, mask], [Attr.Int("axis", -1)]).Outputs[0]!;
                    extended[(mask, keep)] = value;
                    recorder.Count(MaskRule);
                }
                node.ReplaceInput(index, value);
            }
    }

    /// <summary>A tensor like <paramref name="like"/> whose last axis (<paramref name="leading"/> = -1: all leading axes
    /// kept) or whose axes after the first (<paramref name="leading"/> = 1: [batch, P]) is P long, filled with
    /// <paramref name="value"/> of <paramref name="type"/>.</summary>
    private static Value Fill(GraphEditor edit, Value like, TensorDataType type, int leading, long p, double value)
    {
        var shape = edit.Op("Shape", like);
        var head = edit.Op("Slice", shape, edit.Constant(I64(0)), edit.Constant(I64(leading)));
        var fillShape = edit.AddNode("Concat", [head, edit.Constant(I64(p))], [Attr.Int("axis", 0)]).Outputs[0]!;
        return edit.AddNode("ConstantOfShape", [fillShape], [Attr.FromTensor("value", ScalarOf(type, value, rank1: true))]).Outputs[0]!;
    }

    private static List<Usage> UsesOf(Value value) => value.Uses.Where(u => u.Node is not null).ToList();

    private static void Rewire(List<Usage> uses, Value replacement)
    {
        foreach (var use in uses) use.Node!.ReplaceInput(use.Index, replacement);
    }

    private static Tensor I64(params long[] values) => ArrayTensor.Create<long>(values, values.Length);

    private static ArrayTensor ScalarOf(TensorDataType type, double value, bool rank1)
    {
        long[] dims = rank1 ? [1] : [];
        return type switch
        {
            TensorDataType.Int64 => ArrayTensor.Create<long>([(long)value], dims),
            TensorDataType.Int32 => ArrayTensor.Create<int>([(int)value], dims),
            TensorDataType.Float => ArrayTensor.Create<float>([(float)value], dims),
            TensorDataType.Double => ArrayTensor.Create<double>([value], dims),
            TensorDataType.Float16 => ArrayTensor.Create<Half>([(Half)value], dims),
            TensorDataType.BFloat16 => ArrayTensor.Create<BFloat16>([(BFloat16)(float)value], dims),
            TensorDataType.Bool => ArrayTensor.Create<byte>([(byte)(value != 0 ? 1 : 0)], dims),
            _ => throw new SinkBiasException($"cannot build a {type.OnnxName()} constant for the sink bias"),
        };
    }
}
