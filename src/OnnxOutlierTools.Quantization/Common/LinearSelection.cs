using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.Common;

/// <summary>What a site's linears compute from, in the block's terms.</summary>
public enum SiteKind
{
    /// <summary>q/k/v (or packed qkv): the attention input.</summary>
    Qkv,
    /// <summary>o_proj: the attention output.</summary>
    AttentionOutput,
    /// <summary>gate/up (GLU, packed or not) or fc1 (MLP): the FFN input.</summary>
    FfnInput,
    /// <summary>down_proj / fc2: the down-projection input, where massive activations are born.</summary>
    Down,
    /// <summary>Any other block linear (an output gate, a low-rank down-projection, an opaque mixer's projections, cross-attention).</summary>
    Other,
    /// <summary>The LM head (only with <see cref="QuantizationOptions.IncludeLmHead"/>).</summary>
    LmHead,
}

/// <summary>One linear to quantize: the recognized role, the block it belongs to (null for the head) and its role name
/// (q, k, v, qkv, o, gate, up, gate-up, fc1, down, lm-head, ...).</summary>
public sealed record QuantizableLinear(LinearRole Linear, int? Block, string Role)
{
    public Value Weight => Linear.Weight;
    public override string ToString() => $"{Role} {Linear.Weight.Name} [{Linear.InFeatures}->{Linear.OutFeatures}]";
}

/// <summary>A site: the linears reading one input tensor (q/k/v share the attention norm's output, gate/up the FFN norm's). An
/// activation quantizer quantizes <see cref="Input"/> once for all of them; error attribution quantizes one site at a time.</summary>
/// <param name="Id">block{b}.qkv, block{b}.o, block{b}.ffn-in, block{b}.down, block{b}.other{i}, lm-head.</param>
public sealed record QuantizationSite(string Id, int? Block, SiteKind Kind, Value Input, IReadOnlyList<QuantizableLinear> Linears)
{
    public override string ToString() => $"{Id} ({string.Join(", ", Linears.Select(l => l.Role))})";
}

/// <summary>A recognized linear left unquantized, with the reason (a failed check is data).</summary>
public sealed record SkippedLinear(string Weight, int? Block, string Role, string Reason)
{
    public override string ToString() => Block is int b ? $"block {b} {Role} {Weight}: {Reason}" : $"{Role} {Weight}: {Reason}";
}

/// <summary>The linears a quantizer works on, read from the recognized structure: every block linear that is a MatMul or Gemm
/// with an initializer weight (both layouts; a packed QKV or gate/up is one linear), grouped by input tensor into sites; the
/// LM head only when asked, the embedding table only when asked. Everything else recognized is listed in <see cref="Skipped"/>
/// with the reason (fused attention's packed weights, already-quantized linears, stacked weights, the head when not asked).</summary>
public sealed record LinearSelection(IReadOnlyList<QuantizationSite> Sites, IReadOnlyList<SkippedLinear> Skipped, EmbeddingRole? Embedding)
{
    public IEnumerable<QuantizableLinear> Linears => Sites.SelectMany(s => s.Linears);
    public int LinearCount => Sites.Sum(s => s.Linears.Count);

    /// <summary>Linears per role name ("q" -> 5, "down" -> 5, ...), for the console.</summary>
    public IReadOnlyDictionary<string, int> CountsByRole() =>
        Linears.GroupBy(l => l.Role).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count());

    public static LinearSelection Select(ModelStructure structure, QuantizationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(structure);
        options ??= new QuantizationOptions();
        var sites = new List<QuantizationSite>();
        var skipped = new List<SkippedLinear>();
        var seenNodes = new HashSet<Node>();
        foreach (var block in structure.Blocks)
        {
            int b = block.Index;
            var candidates = new List<(LinearRole Linear, string Role, SiteKind Kind)>();
            if (block.Attention is { } a) AddAttention(candidates, a, "");
            if (block.CrossAttention is { } cross) AddAttention(candidates, cross.Attention, "cross-", SiteKind.Other);
            if (block.Ffn is { } f)
            {
                bool packed = f.Gate is not null && ReferenceEquals(f.Gate.Node, f.Up.Node);
                if (packed) candidates.Add((f.Up, "gate-up", SiteKind.FfnInput));
                else
                {
                    if (f.Gate is not null) candidates.Add((f.Gate, "gate", SiteKind.FfnInput));
                    candidates.Add((f.Up, f.Kind == FfnKind.Glu || f.Gate is not null ? "up" : "fc1", SiteKind.FfnInput));
                }
                candidates.Add((f.Down, f.Gate is not null ? "down" : "fc2", SiteKind.Down));
            }
            foreach (var opaque in new[] { block.Mixer, block.OpaqueFfn }.OfType<OpaqueSublayer>())
                foreach (var linear in opaque.Linears) candidates.Add((linear, opaque == block.Mixer ? "mixer" : "ffn", SiteKind.Other));
            if (block.Moe is not null) skipped.Add(new SkippedLinear("(experts)", b, "moe", "mixture-of-experts FFNs are not quantized by these schemes"));

            var accepted = new List<(QuantizableLinear Linear, SiteKind Kind)>();
            foreach (var (linear, role, kind) in candidates)
            {
                if (!seenNodes.Add(linear.Node)) continue;
                if (WhyNot(linear) is { } reason) skipped.Add(new SkippedLinear(linear.Weight.Name, b, role, reason));
                else accepted.Add((new QuantizableLinear(linear, b, role), kind));
            }
            int others = 0;
            foreach (var group in accepted.GroupBy(x => x.Linear.Linear.Input))
            {
                var kind = group.First().Kind;
                string id = kind switch
                {
                    SiteKind.Qkv => $"block{b}.qkv",
                    SiteKind.AttentionOutput => $"block{b}.o",
                    SiteKind.FfnInput => $"block{b}.ffn-in",
                    SiteKind.Down => $"block{b}.down",
                    _ => $"block{b}.other{others++}",
                };
                if (sites.Any(s => s.Id == id)) id = $"{id}.{group.Key.Name}";
                sites.Add(new QuantizationSite(id, b, kind, group.Key, group.Select(x => x.Linear).ToArray()));
            }
        }
        var head = structure.LmHead ?? structure.ClassifierHead;
        if (head is not null)
        {
            string role = structure.LmHead is not null ? "lm-head" : "classifier-head";
            if (!options.IncludeLmHead) skipped.Add(new SkippedLinear(head.Weight.Name, null, role, "the head is left in float unless asked (--include-head)"));
            else if (!seenNodes.Add(head.Node)) { }
            else if (WhyNot(head) is { } reason) skipped.Add(new SkippedLinear(head.Weight.Name, null, role, reason));
            else sites.Add(new QuantizationSite(role, null, SiteKind.LmHead, head.Input, [new QuantizableLinear(head, null, role)]));
        }
        EmbeddingRole? embedding = null;
        if (structure.Embedding is { } e)
        {
            if (!options.IncludeEmbedding) skipped.Add(new SkippedLinear(e.TokenTable.Name, null, "embedding", "the embedding is left in float unless asked (--include-embedding)"));
            else if (e.Form != EmbeddingForm.Gather || !e.TokenTable.IsInitializer || !IsFloat(e.TokenTable.ConstValue!.DataType) || e.TokenTable.ConstValue.Dims.Count != 2)
                skipped.Add(new SkippedLinear(e.TokenTable.Name, null, "embedding", "only a Gather of a float [vocab, hidden] initializer table is quantized"));
            else embedding = e;
        }
        return new LinearSelection(sites, skipped, embedding);
    }

    private static void AddAttention(List<(LinearRole, string, SiteKind)> candidates, AttentionRole a, string prefix, SiteKind? force = null)
    {
        if (a.LowRank is { } low)
        {
            if (low.QueryDown is { } qd) candidates.Add((qd, prefix + "q-a", SiteKind.Other));
            candidates.Add((low.KvDown, prefix + "kv-a", SiteKind.Other));
        }
        if (a.PackedQkv is { } packed) candidates.Add((packed, prefix + "qkv", force ?? SiteKind.Qkv));
        if (a.Query is { } q) candidates.Add((q, prefix + "q", force ?? SiteKind.Qkv));
        if (a.Key is { } k) candidates.Add((k, prefix + "k", force ?? SiteKind.Qkv));
        if (a.ValueProjection is { } v) candidates.Add((v, prefix + "v", force ?? SiteKind.Qkv));
        if (a.OutputGate is { } gate) candidates.Add((gate.Linear, prefix + "output-gate", SiteKind.Other));
        if (a.Output is { } o) candidates.Add((o, prefix + "o", force ?? SiteKind.AttentionOutput));
    }

    /// <summary>Why <paramref name="linear"/> cannot be quantized here; null when it can.</summary>
    public static string? WhyNot(LinearRole linear)
    {
        if (linear.Quantized) return $"already quantized ({linear.Form.Name()})";
        if (linear.Form is not (LinearForm.MatMul or LinearForm.Gemm)) return $"a {linear.Form.Name()} linear (only MatMul and Gemm are quantized)";
        if (linear.Selection is not null) return "its weight is one slice of a stack chosen at run time";
        if (linear.Weight.ConstValue is not { } weight) return "the weight is not an initializer";
        if (!IsFloat(weight.DataType)) return $"the weight is {weight.DataType.OnnxName()}, not a float type";
        if (weight.Dims.Count != 2) return $"the weight has rank {weight.Dims.Count}, not 2";
        if (!ReferenceEquals(linear.Node.Input(0), linear.Input)) return "the activation is not the node's first input";
        if (linear.Form == LinearForm.Gemm && linear.Node.GetInt("transA", 0) != 0) return "a Gemm with transA (the activation transposed)";
        if (linear.Form == LinearForm.Gemm && (linear.Node.GetFloat("alpha", 1) != 1 || linear.Node.GetFloat("beta", 1) != 1)) return "a Gemm with alpha or beta other than 1";
        if (linear.WeightPath.Any(n => n.OpType is not ("Transpose" or "Cast")))
            return $"the weight reaches the node through {string.Join(", ", linear.WeightPath.Select(n => n.OpType))}";
        if (linear.WeightPath.Count > 0 && linear.WeightPath[0].Input(0) != linear.Weight) return "the weight path does not start at the weight";
        return null;
    }

    private static bool IsFloat(TensorDataType type) => type is TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16;
}
