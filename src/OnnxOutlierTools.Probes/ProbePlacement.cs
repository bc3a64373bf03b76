using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Probes;

/// <summary>A tensor the probe pass will reduce: its first role gives the id and kind, later roles of the same tensor are
/// <see cref="AlsoAs"/>. <see cref="Attention"/> is set for attention points (the layer whose probabilities are wanted).</summary>
public sealed record PlannedProbe
{
    public required string Id { get; init; }
    public required ProbeKind Kind { get; init; }
    public int? Block { get; init; }
    public required string Role { get; init; }
    /// <summary>The tensor (an unemitted skip-norm sum is materialized by the pass); null for a fused attention op,
    /// whose probabilities the pass computes from the op's q/k.</summary>
    public TensorRef? Tensor { get; init; }
    public AttentionRole? Attention { get; init; }
    public long? Channels { get; init; }
    public int? Heads { get; init; }
    public IReadOnlyList<string> ReadBy { get; init; } = [];
    public List<ProbeRoleRef> AlsoAs { get; } = [];
}

/// <summary>Where the probes go, read from the recognized roles only (nothing is edited): the points in graph order
/// (embedding, then per block: attention input, residual sum, attention probabilities, o_proj input, FFN input,
/// down-projection input, the post-norm FFN sum, the block output), one point per distinct tensor, and the points
/// wanted but impossible, with the reason.</summary>
public static class ProbePlacement
{
    public static (IReadOnlyList<PlannedProbe> Points, IReadOnlyList<SkippedProbe> Skipped) Plan(ModelStructure structure, ProbeSettings settings)
    {
        ArgumentNullException.ThrowIfNull(structure);
        ArgumentNullException.ThrowIfNull(settings);
        var wanted = settings.Kinds.ToHashSet();
        var readers = LinearReaders(structure);
        var points = new List<PlannedProbe>();
        var skipped = new List<SkippedProbe>();

        void Add(ProbeKind kind, int? block, string id, string role, TensorRef? tensor, long? channels = null)
        {
            if (!wanted.Contains(kind) || tensor is null) return;
            var existing = points.FirstOrDefault(p => p.Tensor is { } t && Same(t, tensor));
            if (existing is not null)
            {
                existing.AlsoAs.Add(new ProbeRoleRef(id, kind, block, role));
                return;
            }
            points.Add(new PlannedProbe
            {
                Id = id, Kind = kind, Block = block, Role = role, Tensor = tensor,
                Channels = ChannelsOf(tensor) ?? channels,
                ReadBy = tensor.Value is { } v && readers.TryGetValue(v, out var list) ? list : [],
            });
        }
        void Skip(ProbeKind kind, int? block, string id, string reason)
        {
            if (wanted.Contains(kind)) skipped.Add(new SkippedProbe(id, kind, block, reason));
        }

        if (structure.EmbeddingScale is { } scale)
            Add(ProbeKind.Embedding, null, "embedding", "embeddingScale.output", TensorRef.Of(scale.Output), HiddenSize(structure));
        else if (structure.Embedding is { } embedding)
            Add(ProbeKind.Embedding, null, "embedding", "embedding.output", TensorRef.Of(embedding.Output), HiddenSize(structure));
        else
            Skip(ProbeKind.Embedding, null, "embedding", "the model has no token embedding (it takes inputs_embeds)");

        bool postNorm = structure.Placement == NormPlacement.PostNorm;
        long? hidden = HiddenSize(structure);
        foreach (var block in structure.Blocks)
        {
            int b = block.Index;
            var attention = block.Attention;
            if (attention is null)
            {
                string why = $"block {b} has no recognized softmax attention (its token mixer is {block.Kind.ToString().ToLowerInvariant()})";
                Skip(ProbeKind.AttentionInput, b, ProbeNames.BlockPoint(b, ProbeKind.AttentionInput), why);
                Skip(ProbeKind.AttentionProbabilities, b, ProbeNames.BlockPoint(b, ProbeKind.AttentionProbabilities), why);
                Skip(ProbeKind.OutputProjectionInput, b, ProbeNames.BlockPoint(b, ProbeKind.OutputProjectionInput), why);
            }
            else
            {
                var qkv = attention.Query ?? attention.PackedQkv;
                var input = qkv?.Input ?? block.AttentionNorm?.Output;
                string role = attention.Query is not null ? "attention.query.input" : attention.PackedQkv is not null ? "attention.packedQkv.input" : "attentionNorm.output";
                Add(ProbeKind.AttentionInput, b, ProbeNames.BlockPoint(b, ProbeKind.AttentionInput), role, input is null ? null : TensorRef.Of(input), qkv?.InFeatures);
            }

            // The sum after the attention's residual add: a post-norm block's attention norm normalizes it, a
            // pre-norm block carries it to the FFN.
            if (postNorm && block.AttentionNorm is { } an)
                Add(ProbeKind.ResidualSum, b, ProbeNames.ResidualSumAttention(b), an.ResidualSum is not null ? "attentionNorm.residualSum" : "attentionNorm.input", an.ResidualSum ?? an.Input, hidden);
            else if (!postNorm && block.AttentionResidual is { } midpoint)
                Add(ProbeKind.ResidualSum, b, ProbeNames.ResidualSumAttention(b), "attentionResidual", midpoint, hidden);

            if (attention is not null)
            {
                string id = ProbeNames.BlockPoint(b, ProbeKind.AttentionProbabilities);
                if (wanted.Contains(ProbeKind.AttentionProbabilities))
                {
                    if (attention.Probabilities is { } probabilities)
                        points.Add(new PlannedProbe { Id = id, Kind = ProbeKind.AttentionProbabilities, Block = b, Role = "attention.probabilities", Tensor = TensorRef.Of(probabilities), Attention = attention, Heads = attention.NumHeads });
                    else if (FusedAttentionProbabilities.WhyNot(attention) is { } reason)
                        skipped.Add(new SkippedProbe(id, ProbeKind.AttentionProbabilities, b, reason));
                    else
                        points.Add(new PlannedProbe { Id = id, Kind = ProbeKind.AttentionProbabilities, Block = b, Role = "attention.core", Attention = attention, Heads = attention.NumHeads });
                }
                var oInput = attention.Output?.Input;
                if (oInput is null) Skip(ProbeKind.OutputProjectionInput, b, ProbeNames.BlockPoint(b, ProbeKind.OutputProjectionInput), $"block {b}: no linear reads the attention output");
                else Add(ProbeKind.OutputProjectionInput, b, ProbeNames.BlockPoint(b, ProbeKind.OutputProjectionInput), "attention.output.input", TensorRef.Of(oInput), attention.Output!.InFeatures);
            }

            if (block.Ffn is { } ffn)
            {
                var first = ffn.Gate ?? ffn.Up;
                Add(ProbeKind.FfnInput, b, ProbeNames.BlockPoint(b, ProbeKind.FfnInput), ffn.Gate is not null ? "ffn.gate.input" : "ffn.up.input", TensorRef.Of(first.Input), first.InFeatures);
                Add(ProbeKind.DownInput, b, ProbeNames.BlockPoint(b, ProbeKind.DownInput), "ffn.down.input", TensorRef.Of(ffn.DownInput), ffn.Down.InFeatures);
            }
            else
            {
                string why = block.Moe is not null ? $"block {b}'s FFN is a mixture of experts (no single FFN input and down projection)" : $"block {b}'s FFN is not recognized";
                Skip(ProbeKind.FfnInput, b, ProbeNames.BlockPoint(b, ProbeKind.FfnInput), why);
                Skip(ProbeKind.DownInput, b, ProbeNames.BlockPoint(b, ProbeKind.DownInput), why);
            }

            if (postNorm && block.FfnNorm is { } fn)
                Add(ProbeKind.ResidualSum, b, ProbeNames.ResidualSumFfn(b), fn.ResidualSum is not null ? "ffnNorm.residualSum" : "ffnNorm.input", fn.ResidualSum ?? fn.Input, hidden);

            Add(ProbeKind.Residual, b, ProbeNames.BlockPoint(b, ProbeKind.Residual), "residualOut", block.ResidualOut, hidden);
        }

        foreach (string name in settings.Tensors)
        {
            var value = structure.Graph.FindValue(name)
                ?? throw new ArgumentException($"'{name}' (--probe) is neither a probe kind ({string.Join(", ", ProbeSelection.KindWords)}) nor a tensor of graph '{structure.Graph.Name}'");
            if (value.Shape is { Count: < 2 } shape)
                throw new ArgumentException($"tensor '{name}' (--probe) has rank {shape.Count}; a probe needs tokens and channels (rank 2 or more)");
            bool added = wanted.Add(ProbeKind.Tensor);
            Add(ProbeKind.Tensor, null, ProbeNames.TensorPoint(name), "tensor", TensorRef.Of(value));
            if (added) wanted.Remove(ProbeKind.Tensor);
        }
        return (points, skipped);
    }

    /// <summary>The residual stream's width: the token table's second axis, else a block norm's gain length.</summary>
    private static long? HiddenSize(ModelStructure structure)
    {
        if (structure.Embedding?.TokenTable.Shape is { Count: 2 } table && table[1].Value is long width) return width;
        foreach (var block in structure.Blocks)
            foreach (var norm in block.Norms)
                if (norm.Norm.Gain.Shape is { Count: 1 } gain && gain[0].Value is long size) return size;
        return null;
    }

    private static bool Same(TensorRef a, TensorRef b) =>
        a.Value is not null ? ReferenceEquals(a.Value, b.Value) : b.Value is null && ReferenceEquals(a.Node, b.Node) && a.OutputIndex == b.OutputIndex;

    private static long? ChannelsOf(TensorRef tensor) =>
        tensor.Value?.Shape is { Count: > 0 } shape ? shape[^1].Value : null;

    /// <summary>Input value -> the weights of the linears reading it.</summary>
    private static Dictionary<Value, IReadOnlyList<string>> LinearReaders(ModelStructure structure)
    {
        var linears = new List<LinearRole>();
        foreach (var block in structure.Blocks)
        {
            if (block.Attention is { } a) linears.AddRange(new[] { a.Query, a.Key, a.ValueProjection, a.PackedQkv, a.Output }.OfType<LinearRole>());
            if (block.Ffn is { } f) linears.AddRange(new[] { f.Gate, f.Up, f.Down }.OfType<LinearRole>());
        }
        if (structure.LmHead is { } head) linears.Add(head);
        if (structure.ClassifierHead is { } classifier) linears.Add(classifier);
        return linears.GroupBy(l => l.Input).ToDictionary(g => g.Key, g => (IReadOnlyList<string>)g.Select(l => l.Weight.Name).Distinct().ToArray());
    }
}
