using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Finds attention units: fused ops (com.microsoft Attention / MultiHeadAttention /
/// GroupQueryAttention, ai.onnx Attention) and the decomposed MatMul-Softmax-MatMul form. Q, K and V are
/// traced back to their linear layers through reshapes, RoPE, KV-cache concatenation and repeat-kv.</summary>
internal sealed partial class AttentionRecognizer(Graph graph, LinearIndex linears, RecognitionTrace trace, Matcher? matcher = null,
    IReadOnlyList<NormRole>? norms = null)
{
    private const string Ms = "com.microsoft";

    // Ops a Q/K/V path may pass through between a projection and the attention core.
    private static readonly HashSet<string> PathOps =
    [
        "Reshape", "Transpose", "Cast", "Identity", "Squeeze", "Unsqueeze", "Split", "Slice", "Concat", "Expand", "Tile",
        "Gather", "Mul", "Add", "Sub", "Div", "Neg", "Where", "RotaryEmbedding", "TensorScatter", "ScatterND",
    ];

    public List<AttentionRole> Recognize()
    {
        var found = new List<AttentionRole>();
        foreach (var node in graph.Nodes)
        {
            AttentionRole? role = null;
            string? rule = null;
            if (node.Is("GroupQueryAttention", Ms)) (rule, role) = ("GroupQueryAttention", GroupQuery(node));
            else if (node.Is("MultiHeadAttention", Ms)) (rule, role) = ("MultiHeadAttention", MultiHead(node));
            else if (node.Is("Attention", Ms)) (rule, role) = ("com.microsoft::Attention", FusedWeights(node));
            else if (node.Is("Attention")) (rule, role) = ("Attention", Standard(node));
            else if (node.Is("Softmax")) (rule, role) = ("DecomposedAttention", Decomposed(node));
            else if (CustomAttentionOps.For(node) is { } custom) (rule, role) = (custom.Name, Custom(node, custom));
            if (rule is null) continue;
            trace.Count(rule, role is not null);
            if (role is null) continue;
            role = role with { MaskRole = AttentionMasks.Classify(node, role) };
            found.Add(role with { PositionBias = RelativePositionBias.Find(role) });
        }
        return found;
    }

    // ---- fused ops --------------------------------------------------------------------------------

    private AttentionRole? GroupQuery(Node node)
    {
        bool packed = node.Input(1) is null && node.Input(2) is null;
        var q = TraceLinears(node.Input(0));
        int heads = (int)node.GetInt("num_heads", 0), kvHeads = (int)node.GetInt("kv_num_heads", 0);
        LinearRole? packedQkv = null, ql = null, kl = null, vl = null;
        PathTrace? k = null;
        if (packed) packedQkv = Single(q, node, "packed QKV input");
        else { ql = Single(q, node, "query"); kl = Single(k = TraceLinears(node.Input(1)), node, "key"); vl = Single(TraceLinears(node.Input(2)), node, "value"); }
        long qkvWidth = packedQkv?.OutFeatures ?? ((ql?.OutFeatures ?? 0) + (kl?.OutFeatures ?? 0) + (vl?.OutFeatures ?? 0));
        int? headSize = heads + 2 * kvHeads > 0 && qkvWidth > 0 ? (int)(qkvWidth / (heads + 2 * kvHeads)) : null;
        // A query projection that also emits an output gate is twice as wide: the key projection tells the head size.
        if (kl is not null && kvHeads > 0 && kl.OutFeatures % kvHeads == 0) headSize = (int)(kl.OutFeatures / kvHeads);
        var rotary = node.GetInt("do_rotary", 0) != 0 ? new RotaryRole(RotaryStyle.InAttentionOp, node.GetInt("rotary_interleaved", 0)) : RotaryOf(q);
        return WithGqaAttributes(node, Finish(AttentionForm.GroupQueryAttention, node, ql, kl, vl, packedQkv, heads, kvHeads, headSize, rotary, node.Input(5), null,
            KvCacheRole.Of(node.Input(3), node.Input(4), node.Output(1), node.Output(2)), qPath: packed ? null : q, kPath: k));
    }

    private AttentionRole? MultiHead(Node node)
    {
        int heads = (int)node.GetInt("num_heads", 0);
        var q = TraceLinears(node.Input(0));
        LinearRole? ql = Single(q, node, "query"), kl = null, vl = null, packedQkv = null;
        PathTrace? k = null;
        if (node.Input(1) is null && node.Input(2) is null) { packedQkv = ql; ql = null; }
        else { kl = Single(k = TraceLinears(node.Input(1)), node, "key"); vl = Single(TraceLinears(node.Input(2)), node, "value"); }
        int? headSize = heads > 0 && ql is not null ? (int)(ql.OutFeatures / heads) : packedQkv is not null && heads > 0 ? (int)(packedQkv.OutFeatures / 3 / heads) : null;
        return Finish(AttentionForm.MultiHeadAttention, node, ql, kl, vl, packedQkv, heads, heads, headSize, RotaryOf(q), node.Input(5) ?? node.Input(4), null,
            KvCacheRole.Of(node.Input(6), node.Input(7), node.Output(1), node.Output(2)), qPath: packedQkv is null ? q : null, kPath: k);
    }

    /// <summary>com.microsoft Attention holds the packed QKV weight as its input 1: a linear inside the op.</summary>
    private AttentionRole? FusedWeights(Node node)
    {
        if (node.Input(0) is not { } x || node.Input(1) is not { } w || ConstantResolver.Resolve(w) is not { } weight || weight.Tensor.Dims.Count != 2)
        {
            trace.Note("com.microsoft::Attention", $"{node.Describe()}: weights (input 1) are not a constant matrix");
            return null;
        }
        var bias = node.Input(2) is { } b && ConstantResolver.Resolve(b) is { } bc ? bc.Value : null;
        var packed = new LinearRole
        {
            Form = LinearForm.AttentionWeights, Node = node, Input = x, Output = node.Output(0)!, Weight = weight.Value, Layout = WeightLayout.InOut,
            Bias = bias, InFeatures = weight.Tensor.Dims[0], OutFeatures = weight.Tensor.Dims[1], WeightPath = weight.PassThrough,
        };
        linears.Add(packed);
        int heads = (int)node.GetInt("num_heads", 0);
        int? headSize = heads > 0 ? (int)(weight.Tensor.Dims[1] / 3 / heads) : null;
        var past = node.Input(4);
        var present = node.Output(1);
        var cache = KvCacheRole.Of(past, past, present, present);
        return Finish(AttentionForm.MicrosoftAttention, node, null, null, null, packed, heads, heads, headSize, RotaryRole.None, node.Input(3), null, cache);
    }

    /// <summary>ai.onnx Attention (opset 23+): Q, K, V, attn_mask, past_key, past_value.</summary>
    private AttentionRole? Standard(Node node)
    {
        int heads = (int)node.GetInt("q_num_heads", 0), kvHeads = (int)node.GetInt("kv_num_heads", 0);
        var q = TraceLinears(node.Input(0));
        var k = TraceLinears(node.Input(1));
        var v = TraceLinears(node.Input(2));
        var ql = Single(q, node, "query");
        var kl = Single(k, node, "key");
        var vl = Single(v, node, "value");
        int? headSize = heads > 0 && ql is not null ? (int)(ql.OutFeatures / heads) : null;
        // A static cache (TensorScatter) is updated before the op: its graph outputs are the present tensors.
        var cache = KvCacheRole.Of(node.Input(4) ?? k.Inputs.FirstOrDefault(), node.Input(5) ?? v.Inputs.FirstOrDefault(),
            k.Outputs.FirstOrDefault() ?? node.Output(1), v.Outputs.FirstOrDefault() ?? node.Output(2));
        return WithSoftcapAttribute(node, Finish(AttentionForm.Attention, node, ql, kl, vl, null, heads, kvHeads == 0 ? heads : kvHeads, headSize, RotaryOf(q), node.Input(3), null,
            cache is { PastKey: null, PresentKey: null } ? null : cache, qPath: q, kPath: k));
    }

    /// <summary>A custom-domain attention core (<see cref="CustomAttentionOps"/>). Head counts come from the op's attributes
    /// when it has them, else from the Reshape shapes on the query path (head size) and the projection widths.</summary>
    private AttentionRole? Custom(Node node, CustomAttentionOp op)
    {
        var q = TraceLinears(node.Input(op.Query));
        var k = TraceLinears(node.Input(op.Key));
        var v = TraceLinears(node.Input(op.Value));
        LinearRole? ql = null, kl = null, vl = null, packed = null;
        if (q.Linears.Count == 1 && k.Linears.Count == 1 && v.Linears.Count == 1 && q.Linears[0] == k.Linears[0] && k.Linears[0] == v.Linears[0])
            packed = q.Linears[0];
        else
        {
            ql = Single(q, node, "query");
            vl = Single(v, node, "value");
            // Multi-head latent attention: the key path also meets the decoupled rotary key (a slice of kv_a); the
            // key projection is the one it shares with the value (kv_b).
            kl = k.Linears.Count == 2 && vl is not null && k.Linears.Contains(vl) ? vl : Single(k, node, "key");
            if (ql is null || kl is null || vl is null) return null;
        }
        int? heads = op.HeadsAttribute is { } ha && node.GetInt(ha, 0) is > 0 and var h ? (int)h : null;
        int? kvHeads = op.KvHeadsAttribute is { } ka && node.GetInt(ka, 0) is > 0 and var kh ? (int)kh : heads;
        long? qWidth = ql?.OutFeatures ?? PackedWidth(q, packed!, 0);
        long? kWidth = kl?.OutFeatures ?? PackedWidth(k, packed!, 1);
        int? headSize = heads > 0 && qWidth is long qw ? (int)(qw / heads) : HeadSizeFromReshape(q);
        if (heads is null && headSize > 0 && qWidth is long qw2) heads = (int)(qw2 / headSize);
        if (op.KvHeadsAttribute is null && headSize > 0 && kWidth is long kw && (packed is not null || kl != vl)) kvHeads = (int)(kw / headSize);
        var cache = CacheOf(k, v);
        // Ops that pad V to the key's head size (MLA) are followed by a Slice back to the value head size.
        var output = node.Output(0)!;
        if (OutputProjection(output) is null && output.Uses.Select(u => u.Node).FirstOrDefault(n => n is not null && n.Is("Slice")) is { } slice && slice.Output(0) is { } sliced)
            output = sliced;
        return Finish(AttentionForm.Custom(op.Name), node, ql, kl, vl, packed, heads, kvHeads, headSize, RotaryOf(q), op.Mask is int m ? node.Input(m) : null, null, cache,
            attentionOutput: output, qPath: packed is null ? q : null, kPath: packed is null ? k : null);
    }

    private static KvCacheRole? CacheOf(PathTrace k, PathTrace v)
    {
        var pastK = k.Inputs.FirstOrDefault();
        var pastV = v.Inputs.FirstOrDefault();
        var presentK = k.Outputs.FirstOrDefault();
        var presentV = v.Outputs.FirstOrDefault();
        return KvCacheRole.Of(pastK, pastV, presentK, presentV);
    }

    /// <summary>The head size a Reshape on the query path splits into: the last entry of its target shape (a constant,
    /// or a Concat whose last part is one), when positive.</summary>
    private static int? HeadSizeFromReshape(PathTrace path)
    {
        foreach (var r in path.Nodes.Where(n => n.Is("Reshape")))
        {
            if (r.Input(1) is not { } shape) continue;
            long? last = null;
            if (ConstantResolver.Resolve(shape)?.Tensor is { Dims.Count: 1, ElementCount: >= 4 } t && t.DataType == TensorDataType.Int64) last = t.ToInt64Array()[^1];
            else if (shape.Producer is { } c && c.Is("Concat") && c.Inputs.Count >= 4 && c.Inputs[^1] is { } piece
                && ConstantResolver.Resolve(piece)?.Tensor is { ElementCount: 1 } pt && pt.DataType == TensorDataType.Int64) last = pt.ToInt64Array()[0];
            if (last is > 0) return (int)last;
        }
        return null;
    }

    /// <summary>The width of part <paramref name="fallbackIndex"/> of a packed projection: the size of the Split output the
    /// path goes through (GQA packs q, k and v with different widths), else a third.</summary>
    private static long PackedWidth(PathTrace path, LinearRole packed, int fallbackIndex)
    {
        foreach (var split in path.Nodes.Where(n => n.Is("Split") && n.Input(0) is { } i && GraphWalk.SameTensor(i, packed.Output)))
        {
            long[]? sizes = split.Input(1) is { } s && ConstantResolver.Resolve(s)?.Tensor is { } st && st.DataType == TensorDataType.Int64 ? st.ToInt64Array()
                : split.GetAttribute("split")?.AsInts().ToArray();
            if (sizes is null || sizes.Length != split.Outputs.Count) continue;
            for (int o = 0; o < split.Outputs.Count; o++)
                if (split.Outputs[o] is { } part && (path.Nodes.Any(n => n.Inputs.Contains(part)) || path.Linears.Count == 1 && part.Uses.Any(u => u.Node is not null && path.Nodes.Contains(u.Node))))
                    return sizes[o];
        }
        return packed.OutFeatures / 3;
    }

    // ---- decomposed -------------------------------------------------------------------------------

    /// <summary>softmax(Q K^T * scale + mask) V around one Softmax node.</summary>
    private AttentionRole? Decomposed(Node softmax)
    {
        const string rule = "DecomposedAttention";
        var probs = softmax.Output(0);
        if (probs is null) return null;
        var pv = GraphWalk.Consumers(probs).Select(c => c.Node).FirstOrDefault(n => n.Is("MatMul") && GraphWalk.SameTensor(n.Input(0), probs) && !IsConst(n.Input(1)));
        if (pv is null) return Fail(rule, softmax, "its output does not feed MatMul(probabilities, V)");

        // Walk back from the softmax input through the mask/scale ops to Q K^T.
        var path = new List<Node>();
        Node? qk = null;
        var frontier = new Queue<(Value Value, int Depth)>();
        frontier.Enqueue((softmax.Input(0)!, 0));
        var seen = new HashSet<Value>();
        while (frontier.Count > 0 && qk is null)
        {
            var (value, depth) = frontier.Dequeue();
            if (!seen.Add(value) || value.Producer is not { } p || depth > 6) continue;
            if (p.Is("MatMul") && !IsConst(p.Input(0)) && !IsConst(p.Input(1))) { qk = p; break; }
            if (!(p.Is("Add") || p.Is("Sub") || p.Is("Mul") || p.Is("Div") || p.Is("Where") || p.Is("Tanh") || GraphWalk.IsLayoutOp(p))) continue;
            path.Add(p);
            foreach (var input in p.Inputs) if (input is not null && !IsConst(input)) frontier.Enqueue((input, depth + 1));
        }
        if (qk is null) return Fail(rule, softmax, "no MatMul(Q, K^T) with two computed inputs behind its input");

        // The scale sits right after Q K^T (Div by sqrt(d) or Mul by 1/sqrt(d)); masks join further on.
        double? scale = ScaleAfter(qk);
        Value? mask = null;
        foreach (var n in path)
        {
            if (!(n.Is("Add") || n.Is("Where") || n.Is("Sub") || n.Is("Mul")) || mask is not null) continue;
            mask = n.Inputs.FirstOrDefault(i => i is not null && !IsConst(i) && i.Producer is { } p && !path.Contains(p) && p != qk);
        }
        var q = TraceLinears(qk.Input(0));
        var k = TraceLinears(qk.Input(1));
        var v = TraceLinears(pv.Input(1));
        // Otherwise Q (BERT) or Q and K (scaled by d^-1/4 each) were scaled before the product.
        if (scale is null && (q.Scale is not null || k.Scale is not null)) scale = (q.Scale ?? 1) * (k.Scale ?? 1);

        LinearRole? ql = null, kl = null, vl = null, packed = null;
        bool cachedKv = IsCachedKeysAndValues(q, k, v);
        if (q.Linears.Count == 1 && k.Linears.Count == 1 && v.Linears.Count == 1 && q.Linears[0] == k.Linears[0] && k.Linears[0] == v.Linears[0])
            packed = q.Linears[0];
        else if (cachedKv) ql = q.Linears[0];
        else
        {
            ql = Single(q, softmax, "query");
            kl = Single(k, softmax, "key");
            vl = Single(v, softmax, "value");
            if (ql is null || kl is null || vl is null) return null;
        }
        int? headSize = scale is double sc && sc > 0 ? (int)Math.Round(1 / (sc * sc)) : null;
        // An exporter that drops the scale (or folds it into the weights) still splits heads with a Reshape.
        headSize ??= HeadSizeFromReshape(q) ?? HeadSizeOnLayoutPath(qk.Input(0));
        long qWidth = ql?.OutFeatures ?? PackedWidth(q, packed!, 0);
        int? heads = headSize > 0 ? (int)(qWidth / headSize) : null;
        int? kvHeads = cachedKv ? CachedHeads(k.Inputs[0]) ?? heads
            : headSize > 0 ? (int)((kl?.OutFeatures ?? PackedWidth(k, packed!, 1)) / headSize) : null;

        var cache = CacheOf(k, v);
        return WithDecomposedFacts(Finish(AttentionForm.Decomposed, softmax, ql, kl, vl, packed, heads, kvHeads, headSize, RotaryOf(q), mask, probs, cache,
            attentionOutput: pv.Output(0), core: [.. path, qk, softmax, pv], qPath: q, kPath: k), path, mask);
    }

    /// <summary>Keys and values that are only read from the cache (a decoder-with-past's cross-attention: the encoder's keys
    /// and values were projected once, at the first step, and come back as <c>past_key_values.i.encoder.*</c>), next to a
    /// query projected from the stream.</summary>
    private static bool IsCachedKeysAndValues(PathTrace q, PathTrace k, PathTrace v) =>
        q.Linears.Count == 1 && k.Linears.Count == 0 && v.Linears.Count == 0 && k.Inputs.Count == 1 && v.Inputs.Count == 1 && k.Inputs[0] != v.Inputs[0];

    /// <summary>The heads of a cached [batch, heads, length, head size] key, when its shape says.</summary>
    private static int? CachedHeads(Value past) => past.Shape is { Count: 4 } shape && shape[1].Value is long h and > 0 ? (int)h : null;

    private static double? ScaleAfter(Node qk)
    {
        var v = qk.Output(0);
        for (int i = 0; i < 3 && v is not null; i++)
        {
            var next = v.Uses.Select(u => u.Node).FirstOrDefault(n => n is not null && (n.Is("Div") || n.Is("Mul") || n.Is("Cast")));
            if (next is null) return null;
            if (!next.Is("Cast"))
            {
                var other = next.Inputs.FirstOrDefault(x => x is not null && x != v);
                if (other is not null && ConstantResolver.ScalarOf(other) is double s && s > 0) return next.Is("Div") ? 1 / s : s;
                return null;
            }
            v = next.Output(0);
        }
        return null;
    }

    // ---- shared -----------------------------------------------------------------------------------

    private AttentionRole? Finish(AttentionForm form, Node node, LinearRole? q, LinearRole? k, LinearRole? v, LinearRole? packed,
        int? heads, int? kvHeads, int? headSize, RotaryRole rotary, Value? mask, Value? probs, KvCacheRole? cache,
        Value? attentionOutput = null, IReadOnlyList<Node>? core = null, PathTrace? qPath = null, PathTrace? kPath = null)
    {
        // Keys and values from the cache alone (no projection in this graph) only with a past key and value to read.
        bool cachedKv = k is null && v is null && cache is { PastKey: not null, PastValue: not null };
        if (packed is null && (q is null || (k is null || v is null) && !cachedKv)) return null;
        var output = attentionOutput ?? node.Output(0)!;
        var gate = OutputGate(output, q ?? packed);
        var o = OutputProjection(gate?.Output ?? output);
        if (o is null) trace.Note(form.ToString(), $"{node.Describe()}: no output projection reads the attention output '{(gate?.Output ?? output).Name}'");
        return new AttentionRole
        {
            Form = form,
            CoreNodes = core ?? [node],
            Query = q,
            Key = k,
            ValueProjection = v,
            PackedQkv = packed,
            Output = o,
            NumHeads = heads,
            KvHeads = kvHeads,
            HeadSize = headSize,
            Rotary = rotary,
            Mask = mask,
            Probabilities = probs,
            AttentionOutput = output,
            Cache = cache,
            QueryNorm = QkNorm(qPath, node, "query", headSize),
            KeyNorm = QkNorm(kPath, node, "key", headSize),
            OutputGate = gate,
        };
    }

    /// <summary>The linear that reads the attention output (through transposes and reshapes).</summary>
    private LinearRole? OutputProjection(Value output)
    {
        foreach (var (node, _, via) in GraphWalk.Consumers(output, depth: 8))
            if (linears.ByNode(node) is { } l && GraphWalk.SameTensor(l.Input, via)) return l;
        return QuantizedReader(output);
    }

    private AttentionRole? Fail(string rule, Node node, string reason)
    {
        trace.Note(rule, $"{node.Describe()}: {reason}");
        return null;
    }

    private LinearRole? Single(PathTrace path, Node at, string what)
    {
        if (path.Linears.Count == 1) return path.Linears[0];
        trace.Note("Attention", $"{at.Describe()}: the {what} path reaches {path.Linears.Count} linear layers ({string.Join(", ", path.Linears.Select(l => l.Node.Describe()))})");
        return null;
    }

    private static bool IsConst(Value? v) => v is not null && ConstantResolver.Resolve(v) is not null;

    private static RotaryRole RotaryOf(PathTrace path)
    {
        if (path.Nodes.FirstOrDefault(n => n.OpType == "RotaryEmbedding") is { } r)
            return new RotaryRole(RotaryStyle.RotaryEmbeddingOp, r.GetInt("interleaved", 0));
        if (path.Nodes.Any(n => n.Is("Neg")) && path.Nodes.Any(n => n.Is("Concat"))) return new RotaryRole(RotaryStyle.RotateHalf);
        if (path.Nodes.Count(n => n.Is("Mul") && n.Inputs.All(i => i is not null && !IsConst(i))) >= 2) return new RotaryRole(RotaryStyle.Decomposed);
        return RotaryRole.None;
    }

    /// <summary>What lies behind a Q/K/V input: the linear layers reached, the graph inputs (past KV) met,
    /// graph outputs on or next to the path (present KV), a scalar scale on the way.</summary>
    private sealed record PathTrace(List<LinearRole> Linears, List<Value> Inputs, List<Value> Outputs, List<Node> Nodes, double? Scale)
    {
        /// <summary>QK-norms the path passed through (the trace steps over a norm only when a QK-norm rule matches it).</summary>
        public List<QkNormRole> QkNorms { get; } = [];
    }

    private PathTrace TraceLinears(Value? start)
    {
        var result = new PathTrace([], [], [], [], null);
        if (start is null) return result;
        double? scale = null;
        var queue = new Queue<(Value Value, int Depth)>();
        var seen = new HashSet<Value>();
        queue.Enqueue((start, 0));
        while (queue.Count > 0)
        {
            var (value, depth) = queue.Dequeue();
            if (!seen.Add(value)) continue;
            if (value.IsGraphOutput && !result.Outputs.Contains(value)) result.Outputs.Add(value);
            if (linears.ByOutput(value) is { } l)
            {
                if (!result.Linears.Contains(l)) result.Linears.Add(l);
                continue;
            }
            if (value.IsGraphInput && !value.IsInitializer)
            {
                if (value.ElementType?.IsFloatingPoint() == true && !result.Inputs.Contains(value)) result.Inputs.Add(value);
                continue;
            }
            if (TryQkNorm(value) is { } qkNorm)
            {
                if (!result.QkNorms.Contains(qkNorm)) result.QkNorms.Add(qkNorm);
                if (qkNorm.Norm.Input.Value is { } normInput) queue.Enqueue((normInput, depth + 1));
                continue;
            }
            if (value.Producer is not { } p || depth >= 16 || !p.IsDefaultDomain && p.OpType != "RotaryEmbedding") continue;
            if (!PathOps.Contains(p.OpType)) continue;
            result.Nodes.Add(p);
            // A scalar scale (Q / sqrt(d), or Q and K each times d^-1/4, possibly computed as Sqrt(const)).
            if ((p.Is("Div") || p.Is("Mul")) && p.Inputs.Select(i => i is null ? null : ConstantResolver.ScalarOf(i)).FirstOrDefault(x => x is not null) is double s && s > 0)
            {
                scale ??= p.Is("Div") ? 1 / s : s;
                if (p.Input(0) is { } scaled && ConstantResolver.ScalarOf(scaled) is null) queue.Enqueue((scaled, depth + 1));
                else if (p.Input(1) is { } other && ConstantResolver.ScalarOf(other) is null) queue.Enqueue((other, depth + 1));
                continue;
            }
            foreach (int i in DataInputs(p))
                if (p.Input(i) is { } input && !IsConst(input)) queue.Enqueue((input, depth + 1));
        }
        // Present KV that is built next to the path (GPT-2 stacks Unsqueeze(k), Unsqueeze(v) into present).
        // A linear found through layout ops (K^T = Transpose(heads)) leaves the values in between unvisited: the present
        // output may hang off one of them (HF's present key is the heads tensor before the transpose).
        if (result.Outputs.Count == 0)
            foreach (var v in seen.SelectMany(LayoutChain).Distinct())
                foreach (var o in ReachableOutputs(v))
                    if (!result.Outputs.Contains(o)) result.Outputs.Add(o);
        return result with { Scale = scale }; // the copy shares the QkNorms list
    }

    /// <summary>The value and the values it is a re-layout of (what <see cref="GraphWalk.Upstream"/> passes through).</summary>
    private static IEnumerable<Value> LayoutChain(Value value)
    {
        var v = value;
        yield return v;
        for (int i = 0; i < 8 && v.Producer is { } p && GraphWalk.IsLayoutOp(p) && p.Input(0) is { } input; i++) yield return v = input;
    }

    // Values every layer's path meets (rotary cos/sin, the mask) have a use per layer: walking them again for
    // each layer was quadratic in the layer count, so each value's answer is kept (recognition edits nothing).
    private readonly Dictionary<Value, List<Value>> _reachableOutputs = [];

    private List<Value> ReachableOutputs(Value value)
    {
        if (!_reachableOutputs.TryGetValue(value, out var outputs))
            _reachableOutputs[value] = outputs = GraphWalk.ReachableOutputs(value).ToList();
        return outputs;
    }

    private static IEnumerable<int> DataInputs(Node p) => p.OpType switch
    {
        "Gather" or "Reshape" or "Slice" or "Expand" or "Tile" or "Split" or "Squeeze" or "Unsqueeze" or "RotaryEmbedding" => [0],
        "TensorScatter" or "ScatterND" => [0, 1],
        "Where" => [1, 2],
        _ => Enumerable.Range(0, p.Inputs.Count),
    };
}
