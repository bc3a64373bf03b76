using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Folding;

/// <summary>Finds the folding sites of a recognized model, block by block: norm -> q/k/v, norm -> gate/up or fc1, v -> o and
/// up -> down, each with the exactness verdict (every consumer of X is one of the site's linears, and the producer can
/// take 1/s) and the constants to edit. Reads the graph, never edits it.</summary>
public static class FoldSites
{
    public static IReadOnlyList<FoldSite> Discover(ModelStructure structure)
    {
        ArgumentNullException.ThrowIfNull(structure);
        // Every norm of the graph by its output, also those no block role holds (BERT's embedding LayerNorm feeds block 0).
        var norms = new Dictionary<Value, NormRole>();
        foreach (var norm in NormRules.Find(new Matcher(structure.Graph))) norms.TryAdd(norm.Output, norm);
        foreach (var norm in structure.Blocks.SelectMany(b => b.Norms.Select(n => n.Norm))) norms[norm.Output] = norm;
        var sites = new List<FoldSite>();
        foreach (var block in structure.Blocks)
        {
            var attentionLinears = block.Attention is { } a
                ? (a.PackedQkv is { } p ? [p] : new[] { a.Query, a.Key, a.ValueProjection }.OfType<LinearRole>().ToArray())
                : Array.Empty<LinearRole>();
            var ffnLinears = block.Ffn is { } f
                ? (f.Gate is { } g && g.Node != f.Up.Node ? [g, f.Up] : new[] { f.Up })
                : Array.Empty<LinearRole>();
            var ffnKind = block.Ffn?.Kind == FfnKind.Glu ? FoldSiteKind.GateUp : FoldSiteKind.Fc1;
            // A parallel block (GPT-J, Phi-2) reads one norm output in attention and FFN: one site for all its linears.
            if (attentionLinears.Length > 0 && ffnLinears.Length > 0 && attentionLinears[0].Input == ffnLinears[0].Input)
            {
                sites.Add(NormSite(block.Index, FoldSiteKind.Qkv, [.. attentionLinears, .. ffnLinears], norms));
            }
            else
            {
                if (attentionLinears.Length > 0) sites.Add(NormSite(block.Index, FoldSiteKind.Qkv, attentionLinears, norms));
                if (ffnLinears.Length > 0) sites.Add(NormSite(block.Index, ffnKind, ffnLinears, norms));
            }
            if (block.Attention is { Output: not null } attention) sites.Add(ValueOutputSite(block.Index, attention));
            if (block.Ffn is { Kind: FfnKind.Glu } glu) sites.Add(UpDownSite(block.Index, glu));
        }
        return sites;
    }

    /// <summary>Throws <see cref="FoldRefusedException"/> when a linear of <paramref name="sites"/> (consumer or producer)
    /// holds quantized weights.</summary>
    public static void RefuseQuantized(IEnumerable<FoldSite> sites)
    {
        foreach (var site in sites)
            foreach (var linear in site.Consumers.Append(site.Producer?.Linear).OfType<LinearRole>())
                if (linear.Quantized)
                    throw new FoldRefusedException($"{linear.Weight.Name}: already quantized ({linear.Form.Name()}); fold before quantizing");
    }

    private static string Id(int block, FoldSiteKind kind) => $"block{block}.{kind.Name()}";

    private static FoldSite NormSite(int block, FoldSiteKind kind, IReadOnlyList<LinearRole> linears, Dictionary<Value, NormRole> norms)
    {
        var x = linears[0].Input;
        int channels = (int)linears[0].InFeatures;
        string? unsupported = ConsumerProblem(linears, x, channels);
        string? inexact = null;
        FoldProducer? producer = null;
        // Reshapes between the norm and the linears (GPT-2's Conv1D flattens to 2-D for Gemm) keep the channel of every
        // element: both sides have C as their last axis (the gain's length, the linears' input features), and a row-major
        // reshape that keeps the last axis length maps channel c to channel c.
        var views = new List<Node>();
        var top = x;
        while (top.Producer is { } view && (view.Is("Reshape") || view.Is("Identity")) && view.Input(0) is { } source && !norms.ContainsKey(top))
        {
            views.Insert(0, view);
            top = source;
        }
        norms.TryGetValue(top, out var norm);
        if (norm is null) (views, top) = ([], x);
        if (norm is null) inexact = $"'{x.Name}' is not a norm output (made by {x.Producer?.Describe() ?? "no node"})";
        else if (norm.GainForm == NormGainForm.OnePlusGain) inexact = $"{norm.Form.Name()} multiplies by 1 + gamma ('{norm.Gain.Name}', Gemma): 1/s cannot be folded into gamma by a scale";
        else if (NormProblem(norm, channels) is { } problem) inexact = problem;
        else producer = new FoldProducer { Norm = norm };
        for (int i = 0; i < views.Count && inexact is null; i++) inexact = ForeignUse(views[i].Input(0)!, [views[i]]);
        inexact ??= ForeignUse(x, linears.Select(l => l.Node));
        return new FoldSite
        {
            Id = Id(block, kind), Kind = kind, Block = block, Tensor = x, Channels = channels, Producer = producer, Consumers = linears,
            GroupCount = channels, InexactReason = inexact, Unsupported = unsupported, ProbePoint = $"block{block}.{kind.ProbeKindName()}",
            ConsumerSlots = unsupported is null ? ConsumerSlots(linears) : [],
            InputSlots = InputSlots(linears, x),
            ProducerSlots = producer is null ? [] : NormSlots(norm!),
            Norm = norm,
            GainSlot = norm is null || FoldSlot.Data(norm.Gain) is not { } gain || gain.ElementCount != channels || !ScaledTensor.Supports(gain.DataType)
                ? null : FoldSlot.Find(norm.Gain, norm.Nodes, FoldAxis.Columns),
        };
    }

    private static FoldSite ValueOutputSite(int block, AttentionRole attention)
    {
        var o = attention.Output!;
        var x = o.Input;
        int channels = (int)o.InFeatures;
        string? unsupported = ConsumerProblem([o], x, channels);
        string? inexact = null;
        FoldProducer? producer = null;
        int[]? groups = null;
        int groupCount = channels;
        int? heads = attention.NumHeads, kvHeads = attention.KvHeads ?? attention.NumHeads, size = attention.HeadSize;
        var v = attention.ValueProjection ?? attention.PackedQkv;
        if (attention.OutputGate is not null) unsupported ??= "the attention output is gated before o_proj";
        if (heads is not int h || kvHeads is not int kv || size is not int d || h % kv != 0 || h * d != channels)
            unsupported ??= $"head geometry unknown or inconsistent with o_proj's {channels} inputs (heads {heads?.ToString() ?? "?"}, KV heads {kvHeads?.ToString() ?? "?"}, head size {size?.ToString() ?? "?"})";
        else if (v is null) unsupported ??= "no value projection in this graph";
        else
        {
            long offset = v == attention.ValueProjection ? 0 : PackedValueOffset(attention, v, h, kv, d);
            if (offset < 0 || offset + kv * d > v.OutFeatures)
                unsupported ??= $"the value columns of {v} are not where q, k, v packing puts them";
            else if (v.Selection is not null) unsupported ??= $"{v.Weight.Name} is one slice of a stack";
            else if (v != attention.ValueProjection && PackedValueProblem(attention, v, h, kv, d) is { } packedProblem) unsupported ??= packedProblem;
            else
            {
                groups = new int[channels];
                // o_proj's input channel h*D + d reads KV head h / (H / KV), channel d, of v.
                for (int c = 0; c < channels; c++) groups[c] = (c / d) / (h / kv) * d + c % d;
                groupCount = kv * d;
                producer = new FoldProducer { Linear = v, ColumnOffset = offset };
                unsupported ??= WeightProblem(v);
            }
        }
        if (attention.Cache is { PresentValue: not null } or { PastValue: not null })
            inexact = $"the value cache ({(attention.Cache.PresentValue ?? attention.Cache.PastValue)!.Name}) would hold v / s";
        inexact ??= ForeignUse(x, [o.Node]);
        return new FoldSite
        {
            Id = Id(block, FoldSiteKind.VO), Kind = FoldSiteKind.VO, Block = block, Tensor = x, Channels = channels, Producer = producer,
            Consumers = [o], Groups = groups, GroupCount = groupCount, InexactReason = inexact, Unsupported = unsupported,
            ProbePoint = $"block{block}.{FoldSiteKind.VO.ProbeKindName()}",
            ConsumerSlots = unsupported is null ? ConsumerSlots([o]) : [],
            InputSlots = InputSlots([o], x),
            ProducerSlots = producer is null || unsupported is not null ? [] : LinearOutputSlots(producer.Linear!),
        };
    }

    /// <summary>Where v's columns start in a packed projection: after q (H*D) and k (KV*D), or as com.microsoft Attention's
    /// qkv_hidden_sizes say.</summary>
    private static long PackedValueOffset(AttentionRole attention, LinearRole packed, int h, int kv, int d)
    {
        if (packed.Form == LinearForm.AttentionWeights && packed.Node.GetAttribute("qkv_hidden_sizes") is { } sizes)
        {
            var s = sizes.AsInts();
            return s.Count == 3 && s[2] == kv * d ? s[0] + s[1] : -1;
        }
        return packed.OutFeatures == (long)(h + 2 * kv) * d ? (long)(h + kv) * d : -1;
    }

    /// <summary>Null when v's columns of a packed projection are known to be its contiguous tail: com.microsoft Attention and
    /// GroupQueryAttention define it so; a decomposed graph must split it on the last axis by a Split [H*D, KV*D, KV*D] or a
    /// Slice starting at (H + KV)*D (GPT-NeoX-style per-head interleaving is neither). MultiHeadAttention's packed input
    /// interleaves q, k, v per head.</summary>
    private static string? PackedValueProblem(AttentionRole attention, LinearRole packed, int h, int kv, int d)
    {
        if (packed.Form == LinearForm.AttentionWeights || attention.Form.Op == AttentionOp.GroupQueryAttention) return null;
        if (attention.Form.Op == AttentionOp.MultiHeadAttention) return "MultiHeadAttention's packed QKV interleaves q, k and v per head";
        var readers = new List<Node>();
        var pending = new Queue<Value>([packed.Output]);
        while (pending.Count > 0 && readers.Count < 16)
            foreach (var node in pending.Dequeue().Consumers)
                if ((node.Is("Reshape") || node.Is("Identity")) && node.Output(0) is { } o) pending.Enqueue(o);
                else readers.Add(node);
        long vStart = (long)(h + kv) * d;
        foreach (var node in readers)
        {
            if (node.Is("Split") && node.Outputs.Count == 3)
            {
                var sizes = node.Input(1) is { } splitInput ? Integers(splitInput) : node.GetAttribute("split")?.AsInts().ToArray();
                if (sizes is null && h == kv) return null; // equal thirds
                if (sizes is [var q, var k, var vs] && q == (long)h * d && k == (long)kv * d && vs == (long)kv * d) return null;
            }
            if (node.Is("Slice") && node.Input(1) is { } starts && Integers(starts) is [var start] && start == vStart
                && (node.Input(3) is not { } axes || Integers(axes) is [var axis] && axis != 0))
                return null;
        }
        return $"cannot tell where v's columns are in {packed.Weight.Name} (no Split [q, k, v] or Slice from {vStart} on its last axis)";
    }

    private static long[]? Integers(Value value)
    {
        if (ConstantResolver.Resolve(value)?.Tensor is not { } t || t.ElementCount > 8) return null;
        switch (t.DataType)
        {
            case TensorDataType.Int64: { var a = new long[t.ElementCount]; t.CopyTo<long>(0, a); return a; }
            case TensorDataType.Int32: { var a = new int[t.ElementCount]; t.CopyTo<int>(0, a); return a.Select(x => (long)x).ToArray(); }
            default: return null;
        }
    }

    private static FoldSite UpDownSite(int block, FfnRole ffn)
    {
        var down = ffn.Down;
        var up = ffn.Up;
        var x = down.Input;
        int channels = (int)down.InFeatures;
        string? unsupported = ConsumerProblem([down], x, channels);
        string? inexact = null;
        if (ffn.Gate is { } gate && gate.Node == up.Node) unsupported ??= "gate and up are one packed projection";
        else if (up.OutFeatures != channels) unsupported ??= $"up_proj has {up.OutFeatures} outputs, down_proj {channels} inputs";
        else if (x.Producer is not { } product || !product.Is("Mul") || !product.Inputs.Contains(up.Output))
            unsupported ??= $"the down-projection input is not act(gate) * up (made by {x.Producer?.Describe() ?? "no node"})";
        unsupported ??= WeightProblem(up);
        if (up.Output.Uses.Count != 1) inexact = $"up_proj's output '{up.Output.Name}' has other consumers than the GLU product";
        inexact ??= ForeignUse(x, [down.Node]);
        return new FoldSite
        {
            Id = Id(block, FoldSiteKind.UpDown), Kind = FoldSiteKind.UpDown, Block = block, Tensor = x, Channels = channels,
            Producer = new FoldProducer { Linear = up }, Consumers = [down], GroupCount = channels, InexactReason = inexact, Unsupported = unsupported,
            ProbePoint = $"block{block}.{FoldSiteKind.UpDown.ProbeKindName()}",
            ConsumerSlots = unsupported is null ? ConsumerSlots([down]) : [],
            InputSlots = InputSlots([down], x),
            ProducerSlots = unsupported is null ? LinearOutputSlots(up) : [],
        };
    }

    /// <summary>Why the consumers' rows cannot take s (they read different tensors, stacked, non-float or shared-path weights).</summary>
    private static string? ConsumerProblem(IReadOnlyList<LinearRole> linears, Value x, int channels)
    {
        foreach (var linear in linears)
        {
            if (linear.Input != x) return $"{linear} reads '{linear.Input.Name}', not '{x.Name}'";
            if (linear.InFeatures != channels) return $"{linear} has {linear.InFeatures} inputs, not {channels}";
            if (linear.Quantized) continue; // refused as a whole by RefuseQuantized
            if (WeightProblem(linear) is { } problem) return problem;
        }
        return null;
    }

    private static string? WeightProblem(LinearRole linear)
    {
        if (linear.Quantized) return null;
        if (linear.Selection is not null) return $"{linear.Weight.Name} is one slice of a stack chosen at run time";
        var data = FoldSlot.Data(linear.Weight);
        if (data is null) return $"{linear.Weight.Name} is not a constant";
        if (!ScaledTensor.Supports(data.DataType)) return $"{linear.Weight.Name} is {data.DataType.OnnxName()}, not a float type";
        if (data.Dims.Count != 2) return $"{linear.Weight.Name} is not 2-D";
        foreach (var node in linear.WeightPath)
            if (node.Outputs.Any(o => o is not null && o.Uses.Count > 1))
                return $"{node.Describe()} between {linear.Weight.Name} and {linear.Node.Describe()} also feeds other nodes";
        if (FoldSlot.Find(linear.Weight, linear.WeightPath.Append(linear.Node), FoldAxis.Rows) is null) return $"no node of {linear} reads {linear.Weight.Name}";
        if (linear.Bias is { } bias && (FoldSlot.Data(bias) is not { } b || !ScaledTensor.Supports(b.DataType) || b.ElementCount != linear.OutFeatures
            || BiasSlot(linear) is null))
            return $"the bias {bias.Name} of {linear} is not a foldable float vector";
        return null;
    }

    private static string? NormProblem(NormRole norm, int channels)
    {
        foreach (var (name, value) in new[] { ("gain", (Value?)norm.Gain), ("bias", norm.Bias) })
        {
            if (value is null) continue;
            if (FoldSlot.Data(value) is not { } data) return $"the norm {name} '{value.Name}' is not a constant";
            if (!ScaledTensor.Supports(data.DataType)) return $"the norm {name} '{value.Name}' is {data.DataType.OnnxName()}";
            if (data.ElementCount != channels || data.Dims[^1] != channels) return $"the norm {name} '{value.Name}' has {data.ElementCount} elements, not {channels}";
            if (FoldSlot.Find(value, norm.Nodes, FoldAxis.Columns) is null) return $"no node of the norm reads its {name} '{value.Name}' directly";
        }
        return null;
    }

    /// <summary>The first reader of X that is not one of the site's linears (a residual add, a graph output), as a reason.</summary>
    private static string? ForeignUse(Value x, IEnumerable<Node> linears)
    {
        var own = linears.ToHashSet();
        foreach (var use in x.Uses)
        {
            if (use.IsGraphOutput) return $"'{x.Name}' is also a graph output";
            if (use.Node!.IsDefaultDomain && use.Node.OpType is "Shape" or "Size") continue; // reads the shape, not the values
            if (!own.Contains(use.Node!)) return $"'{x.Name}' also feeds {use.Node!.Describe()} (e.g. a post-norm residual path)";
        }
        return null;
    }

    private static FoldSlot? BiasSlot(LinearRole linear) =>
        linear.Bias is { } bias ? FoldSlot.Find(bias, new[] { linear.BiasNode, linear.Node }.OfType<Node>(), FoldAxis.Columns) : null;

    private static IReadOnlyList<FoldSlot> ConsumerSlots(IEnumerable<LinearRole> linears) =>
        linears.Where(l => !l.Quantized).Select(l => FoldSlot.Find(l.Weight, l.WeightPath.Append(l.Node),
            l.Layout == WeightLayout.InOut ? FoldAxis.Rows : FoldAxis.Columns)!).ToArray();

    private static IReadOnlyList<FoldSlot> InputSlots(IEnumerable<LinearRole> linears, Value x) =>
        linears.Select(l => FoldSlot.Find(x, [l.Node], FoldAxis.Columns)).OfType<FoldSlot>().ToArray();

    private static IReadOnlyList<FoldSlot> NormSlots(NormRole norm) =>
        new[] { norm.Gain, norm.Bias }.OfType<Value>().Select(v => FoldSlot.Find(v, norm.Nodes, FoldAxis.Columns)!).ToArray();

    /// <summary>A producer linear's output columns: its weight's (columns of [in, out], rows of [out, in]) and its bias.</summary>
    private static IReadOnlyList<FoldSlot> LinearOutputSlots(LinearRole linear)
    {
        var weight = FoldSlot.Find(linear.Weight, linear.WeightPath.Append(linear.Node), linear.Layout == WeightLayout.InOut ? FoldAxis.Columns : FoldAxis.Rows)!;
        return BiasSlot(linear) is { } bias ? [weight, bias] : [weight];
    }
}
