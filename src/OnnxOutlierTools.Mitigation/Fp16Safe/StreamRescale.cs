using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Fp16Safe;

/// <summary>The exact rescale of the residual stream: one 2^-k for the whole stream of a pre-norm decoder. A per-channel
/// (or per-block) scale of a down projection's output is never exact, because the residual Add also takes the unscaled
/// stream and every norm divides by a statistic over all channels. The uniform scale is: every writer of the stream
/// (the embedding tables, every o_proj and down projection: output columns and bias) takes 2^-k, and every reader is a
/// norm, which is scale-invariant once its epsilon takes 2^-2k (x / sqrt(mean(x^2) + eps) and (x - mean) / sqrt(var + eps)
/// are unchanged when x -> 2^-k x and eps -> 2^-2k eps; in binary floating point exactly, as every step only shifts
/// exponents). Refused, with the reason, when any other tensor reads the stream (a hidden-state graph output, a
/// post-norm block, sandwich norms, an opaque mixer or FFN, cross-attention, a fused embedding norm), when a norm's
/// epsilon cannot be found, or when an edited element would not be exact (overflow or subnormal).</summary>
internal static class StreamRescale
{
    private sealed record InitializerEdit(Value Initializer, HashSet<Node> Site, Tensor Scaled);
    private sealed record EpsilonAttribute(Node Node, float Value);
    private sealed record EpsilonInput(Node Add, int Index, Value Original, Tensor Scaled);

    private sealed class Edits
    {
        public List<InitializerEdit> Initializers { get; } = [];
        public List<EpsilonAttribute> Attributes { get; } = [];
        public List<EpsilonInput> Inputs { get; } = [];
    }

    /// <summary>Why the stream cannot be rescaled exactly in this structure, or null (nothing edited).</summary>
    public static string? Blocker(ModelStructure structure) => Collect(structure, 1, out _);

    /// <summary>Divides the stream by 2^<paramref name="k"/>; returns why it cannot be done exactly (nothing edited then).</summary>
    /// <param name="redirects">Receives original initializer -> the copy the site reads now, for initializers copied
    /// because something else reads them (a later fold of the same site must edit the copy).</param>
    public static string? Apply(Model model, ModelStructure structure, int k, NodeOrigin origin, IDictionary<Value, Value> redirects)
    {
        if (Collect(structure, k, out var edits) is { } problem) return problem;
        foreach (var e in edits.Initializers)
        {
            var now = SiteInitializer.Replace(model, structure, e.Initializer, e.Site, e.Scaled, origin);
            if (now != e.Initializer) redirects[e.Initializer] = now;
        }
        foreach (var a in edits.Attributes) a.Node.SetAttribute(Attr.Float("epsilon", a.Value));
        var copies = new Dictionary<Value, Value>();
        foreach (var i in edits.Inputs)
        {
            if (!copies.TryGetValue(i.Original, out var copy))
                copies[i.Original] = copy = model.Edit(i.Add.Graph!, origin).Initializer(i.Original.Name + "_fp16_safe", i.Scaled);
            i.Add.ReplaceInput(i.Index, copy);
        }
        return null;
    }

    private static string? Collect(ModelStructure s, int k, out Edits edits)
    {
        edits = new Edits();
        double scale = Math.ScaleB(1, -k);
        if (s.Architecture != ModelArchitecture.Decoder || s.EncoderStack is not null) return $"architecture {s.Architecture.ToString().ToLowerInvariant()}: only a decoder's stream is rescaled";
        if (s.Embedding is not { } embedding) return "no token embedding in this graph (inputs_embeds): the stream's first writer is elsewhere";
        if (embedding.Form == EmbeddingForm.EmbedLayerNormalization) return "a fused EmbedLayerNormalization normalizes the embedding inside the op";
        if (s.FinalNorm is not { } finalNorm) return "no final norm: the LM head reads the stream itself";
        var norms = new List<NormRole> { finalNorm };
        var writers = new List<(LinearRole Linear, string Role)>();
        foreach (var b in s.Blocks)
        {
            string at = $"block {b.Index}";
            if (b.Placement != NormPlacement.PreNorm) return $"{at} is post-norm: the stream is a norm's output there";
            if (b.PostAttentionNorm is not null || b.PostFfnNorm is not null) return $"{at} has sandwich norms (their gains would take the scale; not done)";
            if (b.CrossAttention is not null) return $"{at} has cross-attention";
            if (b.Attention?.Output is not { } o) return $"{at}: {(b.Mixer is not null ? $"a {b.Kind} token mixer" : "an attention without an o_proj")} writes the stream";
            if (b.Ffn?.Down is not { } down) return $"{at}: {(b.Moe is not null ? "a mixture of experts" : "an FFN no rule recognized")} writes the stream";
            if (b.AttentionNorm is not { } an || b.FfnNorm is not { } fn) return $"{at}: a sublayer without its norm reads the stream";
            norms.Add(an);
            norms.Add(fn);
            writers.Add((o, $"{at} o_proj"));
            writers.Add((down, $"{at} down projection"));
        }
        if (StreamReadElsewhere(s, norms) is { } reader) return reader;

        foreach (var table in new[] { embedding.TokenTable, embedding.PositionTable, embedding.TokenTypeTable })
        {
            if (table is null) continue;
            if (AddUniform(edits, table, embedding.Nodes, scale, "the embedding table") is { } p) return p;
        }
        foreach (var (linear, role) in writers)
        {
            if (linear.Quantized || linear.Form is not (LinearForm.MatMul or LinearForm.Gemm) || linear.Selection is not null)
                return $"{role}: a {linear.Form} weight cannot take the scale";
            var site = linear.WeightPath.Append(linear.Node).ToList();
            if (AddColumns(edits, linear.Weight, site, linear.Layout, scale, $"{role} weight") is { } p) return p;
            if (linear.Bias is { } bias)
            {
                var biasSite = new List<Node> { linear.Node };
                if (linear.BiasNode is { } bn) biasSite.Add(bn);
                if (AddUniform(edits, bias, biasSite, scale, $"{role} bias") is { } q) return q;
            }
        }
        foreach (var norm in norms.Distinct())
            if (Epsilon(edits, norm, k) is { } p) return p;
        return null;
    }

    /// <summary>A reader of the stream that is not a norm, a residual Add, or a Cast feeding those.</summary>
    private static string? StreamReadElsewhere(ModelStructure s, List<NormRole> norms)
    {
        var normNodes = norms.SelectMany(n => n.Nodes).ToHashSet();
        var stream = new List<Value>();
        if (s.Embedding!.Output is { } e) stream.Add(e);
        foreach (var b in s.Blocks)
            foreach (var t in new[] { b.ResidualIn, b.AttentionResidual, b.ResidualOut })
                if (t?.Value is { } v) stream.Add(v);
        var streamSet = stream.ToHashSet();
        bool Allowed(Node n) => normNodes.Contains(n) || n.Is("Add") && n.Outputs.Any(o => o is not null && streamSet.Contains(o));
        foreach (var v in streamSet)
        {
            if (v.IsGraphOutput) return $"the stream tensor '{v.Name}' is a graph output (it would come out scaled)";
            foreach (var n in v.Consumers)
            {
                if (Allowed(n)) continue;
                // HF exports cast the stream float -> float in front of each norm; the Cast is linear, its readers count.
                if (n.Is("Cast") && n.Output(0) is { } c && !c.IsGraphOutput && c.Consumers.All(Allowed)) continue;
                return $"{n.Describe()} reads the stream tensor '{v.Name}' and is neither a norm nor a residual Add";
            }
        }
        return null;
    }

    private static string? AddUniform(Edits edits, Value initializer, IEnumerable<Node> site, double scale, string what)
    {
        if (initializer.ConstValue is not { } t || !ScaledTensor.Supports(t.DataType) || t.Dims.Count == 0)
            return $"{what} '{initializer.Name}' is not a float initializer";
        var columns = Enumerable.Repeat(scale, (int)t.Dims[^1]).ToArray();
        return Add(edits, initializer, site, t, null, columns, what);
    }

    private static string? AddColumns(Edits edits, Value weight, IEnumerable<Node> site, WeightLayout layout, double scale, string what)
    {
        if (weight.ConstValue is not { } t || !ScaledTensor.Supports(t.DataType) || t.Dims.Count != 2)
            return $"{what} '{weight.Name}' is not a float matrix initializer";
        // Output channels: the columns of an [in, out] weight, the rows of an [out, in] one. A uniform scale is the same
        // either way, but only one axis may carry it.
        var scales = Enumerable.Repeat(scale, (int)t.Dims[layout == WeightLayout.InOut ? 1 : 0]).ToArray();
        return layout == WeightLayout.InOut ? Add(edits, weight, site, t, null, scales, what) : Add(edits, weight, site, t, scales, null, what);
    }

    private static string? Add(Edits edits, Value initializer, IEnumerable<Node> site, Tensor source, double[]? rows, double[]? columns, string what)
    {
        var existing = edits.Initializers.FirstOrDefault(e => e.Initializer == initializer);
        if (existing is not null) { existing.Site.UnionWith(site); return null; } // one tensor written by several roles
        var scaled = ScaledTensor.Scale(source, rows, columns);
        if (ExactScaleCheck.FirstInexact(source, scaled, rows, columns) is { } inexact) return $"{what} '{initializer.Name}' would not be exact: {inexact}";
        edits.Initializers.Add(new(initializer, site.ToHashSet(), scaled));
        return null;
    }

    /// <summary>eps * 2^-2k where the norm adds it under the square root; eps * 2^-k where it adds it to the root.</summary>
    private static string? Epsilon(Edits edits, NormRole norm, int k)
    {
        string at = $"the {norm.Form} norm at {norm.OutputNode.Describe()}";
        if (norm.Form is NormForm.LayerNormalization or NormForm.SimplifiedLayerNormalization or NormForm.RMSNormalization
            or NormForm.SkipLayerNormalization or NormForm.SkipSimplifiedLayerNormalization)
        {
            var node = norm.Nodes.FirstOrDefault(n => n.GetAttribute("epsilon") is not null);
            if (node is null || norm.Epsilon is not double eps) return $"{at}: no epsilon attribute (the op's default would stay unscaled)";
            float scaled = (float)eps * MathF.ScaleB(1, -2 * k);
            if ((double)scaled != (double)(float)eps * Math.ScaleB(1, -2 * k)) return $"{at}: epsilon {eps:G6} * 2^-{2 * k} is not exact in float";
            edits.Attributes.Add(new(node, scaled));
            return null;
        }
        if (norm.Form is not (NormForm.DecomposedLayerNorm or NormForm.DecomposedRmsNorm)) return $"{at}: a {norm.Form} norm is not rescaled";
        if (norm.Epsilon is null or 0) return null; // nothing added: already scale-invariant
        foreach (var add in norm.Nodes.Where(n => n.Is("Add")))
            for (int i = 0; i < 2; i++)
            {
                if (add.Input(i) is not { } c || add.Input(1 - i) is not { } other || ConstantResolver.Resolve(c) is not { } constant) continue;
                if (ConstantResolver.Scalar(constant.Tensor) is not double value || value != norm.Epsilon) continue;
                int power = other.Producer?.OpType switch { "ReduceMean" => 2 * k, "Sqrt" => k, _ => -1 };
                if (power < 0) return $"{at}: epsilon is added to {other.Producer?.Describe() ?? other.Name}, neither the mean square nor its root";
                if (!ScaledTensor.Supports(constant.Tensor.DataType)) return $"{at}: epsilon is {constant.Tensor.DataType.OnnxName()}";
                if (constant.PassThrough.Count > 0) return $"{at}: epsilon reaches its Add through {constant.PassThrough[0].Describe()}";
                var t = constant.Tensor;
                var factors = Enumerable.Repeat(Math.ScaleB(1, -power), t.Dims.Count == 0 ? 1 : (int)t.Dims[^1]).ToArray();
                var source = t.Dims.Count == 0 ? Reshaped(t) : t;
                var scaledTensor = Materialize(ScaledTensor.ScaleColumns(source, factors), t.Dims);
                if (ExactScaleCheck.FirstInexact(source, Reshaped(scaledTensor), null, factors) is { } inexact) return $"{at}: epsilon would not be exact: {inexact}";
                edits.Inputs.Add(new(add, i, c, scaledTensor));
                return null;
            }
        return $"{at}: the Add of its epsilon ({norm.Epsilon:G6}) was not found";
    }

    /// <summary>A rank-0 tensor viewed as [1] (the kernel scales columns of rank-1 and above).</summary>
    private static Tensor Reshaped(Tensor t) => t.Dims.Count > 0 ? t : new ArrayTensor(t.DataType, [1], t.Bytes.ToArray());

    private static ArrayTensor Materialize(Tensor t, IReadOnlyList<long> dims) => new(t.DataType, dims.ToArray(), t.Bytes.ToArray());
}
