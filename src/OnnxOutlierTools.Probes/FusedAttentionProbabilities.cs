using System.Globalization;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Probes;

/// <summary>Attention probabilities of a fused attention op, recomputed by a side subgraph from the op's own q and k
/// inputs (after rotary: a separate RotaryEmbedding feeds the op, there is none, or GroupQueryAttention rotates inside
/// with do_rotary=1 and the pass repeats that rotary from the op's cos/sin caches):
/// q [B, S, H*D] and k [B, T, kvH*D] are split into heads (4-D inputs are taken as [B, heads, S, D]), the past keys
/// (when the op has a past input) are put in front of k, KV heads are repeated for grouped-query attention,
/// scores = q k^T * scale (the op's <c>scale</c>, else 1/sqrt(D)), soft-capped when the op caps, the op's additive or
/// boolean mask added (MultiHeadAttention <c>attention_bias</c>, ai.onnx Attention <c>attn_mask</c>), a causal mask
/// (query i sees keys j &lt;= i + T - S) for decoders and causal ops, and the sliding window when the layer has one; then
/// Softmax. com.microsoft Attention's q and k are recomputed from its input and packed weights (input W + bias, split at
/// qkv_hidden_sizes), its stacked past's keys put first. GroupQueryAttention with do_rotary=1 gets the op's rotary repeated from its cos/sin cache inputs. Key padding masks (MultiHeadAttention <c>key_padding_mask</c>, GroupQueryAttention's seqlens) are not
/// applied: calibration feeds unpadded windows. A past input is assumed to hold exactly the cached keys (as ONNX Runtime's
/// CPU cache does); a shared past/present buffer sized to the maximum length (genai on CUDA) would add empty slots, which
/// is why calibration runs with an empty past. <see cref="WhyNot"/> says which layers cannot be done.</summary>
internal static class FusedAttentionProbabilities
{
    /// <summary>Why the probabilities of <paramref name="attention"/> cannot be recomputed; null when they can.</summary>
    public static string? WhyNot(AttentionRole attention)
    {
        var op = CoreNode(attention);
        string name = op?.Describe() ?? attention.Form.ToString();
        switch (attention.Form.Op)
        {
            case AttentionOp.Decomposed:
                return attention.Probabilities is null ? "the decomposed attention has no recognized Softmax output" : null;
            case AttentionOp.MicrosoftAttention when op is not null:
                if (op.Input(1) is null) return $"{name} has no weights input";
                if (op.GetInt("do_rotary", 0) == 1) return $"{name} applies rotary inside the op (do_rotary=1) without cos/sin caches to repeat it from";
                if (op.GetInt("past_present_share_buffer", 0) == 1) return $"{name} shares its past and present buffers (sized to the maximum length)";
                if (op.Input(4) is { } stacked && stacked.Shape is not { Count: 5 }) return $"{name}: its past input is not the stacked [2, B, H, P, D] cache";
                break;
            case AttentionOp.Custom:
                return $"{name} is a custom attention op whose q/k semantics are not known";
        }
        if (op is null) return $"the {attention.Form} node was not found among the attention's core nodes";
        if (attention.NumHeads is null) return $"{name}: the number of heads is not known";
        if (attention.Form.Op == AttentionOp.GroupQueryAttention && op.GetInt("do_rotary", 0) == 1 && (op.Input(7) is null || op.Input(8) is null))
            return $"{name} applies rotary inside the op (do_rotary=1) without cos/sin cache inputs to repeat it from";
        if (op.Input(0) is null) return $"{name} has no query input";
        if (KeyInput(attention, op) is null)
        {
            if (attention.Form.Op != AttentionOp.GroupQueryAttention)
                return $"{name} takes packed QKV in its query input (key input empty)";
            if (attention.HeadSize is null) return $"{name}: packed QKV with an unknown head size";
        }
        else if (KeyInput(attention, op)!.Producer is { } producer && producer.OpType is "TensorScatter" or "ScatterND" or "ScatterElements")
            return $"{name} reads its keys from a static cache ({producer.Describe()}): the probabilities would cover cache slots, not the window's keys";
        if (attention.Form.Op == AttentionOp.MultiHeadAttention && op.Input(1) is { } key && key.Shape is { Count: 5 })
            return $"{name} takes packed KV in its key input";
        return null;
    }

    /// <summary>Adds the side subgraph; returns the probabilities [B, H, S, T] and a description for the manifest.</summary>
    public static (Value Probabilities, string Source) Build(ProbeOps ops, AttentionRole attention, bool decoder)
    {
        var op = CoreNode(attention)!;
        int heads = attention.NumHeads!.Value;
        int kvHeads = attention.KvHeads ?? heads;
        bool isGqa = attention.Form.Op == AttentionOp.GroupQueryAttention;
        var query = op.Input(0)!;
        var key = KeyInput(attention, op);
        long headSize = attention.HeadSize ?? (query.Shape is { Count: 3 } qs && qs[2].Value is long width ? width / heads : 0);
        if (headSize <= 0) throw new InvalidOperationException($"{op.Describe()}: the head size is not known");

        var q = ops.Float(query);
        Value k;
        if (attention.Form.Op == AttentionOp.MicrosoftAttention)
        {
            // q, k, v = input W (+ bias), split at qkv_hidden_sizes (default three equal parts).
            var qkv = ops.Op("MatMul", q, ops.Float(op.Input(1)!));
            if (op.Input(2) is { } qkvBias) qkv = ops.Op("Add", qkv, ops.Float(qkvBias));
            var sizes = op.GetAttribute("qkv_hidden_sizes")?.AsInts();
            long qSize = sizes is { Count: 3 } ? sizes[0] : heads * headSize, kSize = sizes is { Count: 3 } ? sizes[1] : qSize;
            q = ops.Slice(qkv, [0], [qSize], [-1]);
            k = ops.Slice(qkv, [qSize], [qSize + kSize], [-1]);
            headSize = qSize / heads;
            key = q; // a 3-D [B, S, H*D] key, as the other ops take it
        }
        else if (key is null)
        {
            // GroupQueryAttention with packed QKV (no rotary inside: checked by WhyNot): [q | k | v] on the last axis.
            k = ops.Slice(q, [heads * headSize], [(heads + kvHeads) * headSize], [2]);
            q = ops.Slice(q, [0], [heads * headSize], [2]);
        }
        else k = ops.Float(key);

        if (attention.Form.Op == AttentionOp.MultiHeadAttention && op.Input(3) is { } bias)
        {
            var b = ops.Float(bias);
            q = ops.Op("Add", q, ops.Slice(b, [0], [heads * headSize], [0]));
            k = ops.Op("Add", k, ops.Slice(b, [heads * headSize], [2 * heads * headSize], [0]));
        }

        var pastKey = PastKeyInput(attention, op);
        Rotary? rotary = isGqa && op.GetInt("do_rotary", 0) == 1
            ? Rotary.Create(ops, op.Input(7)!, op.Input(8)!, pastKey, q, op.GetInt("rotary_interleaved", 0) == 1, headSize)
            : null;
        bool microsoft = attention.Form.Op == AttentionOp.MicrosoftAttention;
        var q4 = Heads(ops, q, !microsoft && query.Shape?.Count == 4 && key is not null, heads, headSize, rotary);
        var k4 = Heads(ops, k, !microsoft && key?.Shape?.Count == 4, kvHeads, headSize, rotary);
        if (pastKey is { } past)
        {
            // com.microsoft Attention stacks key and value: [2, B, H, P, D]; the keys are [0].
            var pastKeys = past.Shape?.Count == 5 ? ops.Op("Gather", [past, ops.Int64Scalar(0)], Attr.Int("axis", 0)) : past;
            k4 = ops.Op("Concat", [ops.Float(pastKeys), k4], Attr.Int("axis", 2));
        }
        if (kvHeads != heads)
        {
            int group = heads / kvHeads;
            var expanded = ops.Op("Expand", ops.Unsqueeze(k4, 2), ops.Int64s(1, 1, group, 1, 1));
            k4 = ops.Reshape(expanded, 0, heads, -1, headSize);
        }

        float scale = op.GetFloat("scale", 0f);
        if (scale == 0f) scale = (float)(1.0 / Math.Sqrt(headSize));
        var scores = ops.Op("Mul", ops.Op("MatMul", q4, ops.Transpose(k4, 0, 1, 3, 2)), ops.FloatScalar(scale));
        float softcap = op.GetFloat("softcap", 0f);
        if (softcap > 0f)
            scores = ops.Op("Mul", ops.Op("Tanh", ops.Op("Div", scores, ops.FloatScalar(softcap))), ops.FloatScalar(softcap));

        var lowest = ops.FloatScalar(float.MinValue);
        var notes = new List<string>();
        var maskInput = attention.Form.Op switch
        {
            AttentionOp.MultiHeadAttention => op.Input(5),
            AttentionOp.Attention => op.Input(3),
            AttentionOp.MicrosoftAttention => op.Input(5),
            _ => null,
        };
        if (maskInput is not null)
        {
            scores = maskInput.ElementType == TensorDataType.Bool
                ? ops.Op("Where", maskInput, scores, lowest)
                : ops.Op("Add", scores, ops.Float(maskInput));
            notes.Add($"mask '{maskInput.Name}'");
        }

        bool causal = decoder || isGqa || op.GetInt("unidirectional", 0) == 1 || op.GetInt("is_causal", 0) == 1;
        long? window = attention.Window.Kind == AttentionWindowKind.Sliding ? attention.Window.Size : null;
        if (causal || window is not null)
        {
            var s = ops.DimScalar(q4, 2);
            var t = ops.DimScalar(k4, 2);
            var zero = ops.Int64Scalar(0);
            var one = ops.Int64Scalar(1);
            // key j is visible to query i when j <= i + (T - S) (and j > i + (T - S) - window).
            var visibleTo = ops.Unsqueeze(ops.Op("Add", ops.Op("Range", zero, s, one), ops.Op("Sub", t, s)), 1); // [S, 1]
            var keys = ops.Unsqueeze(ops.Op("Range", zero, t, one), 0);                                           // [1, T]
            Value? allowed = null;
            if (causal)
            {
                allowed = ops.Op("Not", ops.Op("Greater", keys, visibleTo));
                notes.Add("causal");
            }
            if (window is long w)
            {
                var inWindow = ops.Op("Greater", keys, ops.Op("Sub", visibleTo, ops.Int64Scalar(w)));
                allowed = allowed is null ? inWindow : ops.Op("And", allowed, inWindow);
                notes.Add($"window {w}");
            }
            scores = ops.Op("Where", allowed!, scores, lowest);
        }
        var probabilities = ops.Op("Softmax", [scores], Attr.Int("axis", 3));

        if (rotary is not null) notes.Add($"rotary from cos/sin caches{(rotary.Interleaved ? ", interleaved" : "")}, as do_rotary=1 does inside the op");
        if (pastKey is not null) notes.Add("past keys first");
        if (kvHeads != heads) notes.Add($"KV heads repeated {heads}/{kvHeads}");
        if (softcap > 0f) notes.Add($"softcap {F(softcap)}");
        string source = $"side subgraph from {op.Describe()}'s q/k inputs ({heads} heads x {headSize}, scale {F(scale)}{string.Concat(notes.Select(n => ", " + n))})";
        return (probabilities, source);
    }

    /// <summary>[B, S, n*D] -> [B, n, S, D] (rotated on the way when the op rotates); a 4-D input is taken as [B, n, S, D] already.</summary>
    private static Value Heads(ProbeOps ops, Value x, bool alreadyHeads, int n, long headSize, Rotary? rotary)
    {
        if (alreadyHeads) return x;
        var split = ops.Reshape(x, 0, 0, n, headSize);
        return ops.Transpose(rotary?.Apply(ops, split) ?? split, 0, 2, 1, 3);
    }

    /// <summary>GroupQueryAttention's own rotary (do_rotary=1): the first R = 2 * cache width channels of each head
    /// rotate by the cos/sin cache rows of their positions, P + i for query i after a past of P (no padding: the positions
    /// seqlens_k would give a right-aligned unpadded window). Non-interleaved: halves (x1, x2) -> (x1 cos - x2 sin,
    /// x2 cos + x1 sin); interleaved: the same on the pairs (x[2i], x[2i+1]).</summary>
    private sealed record Rotary(Value Cos, Value Sin, bool Interleaved, long Dim, long HeadSize)
    {
        public static Rotary Create(ProbeOps ops, Value cosCache, Value sinCache, Value? pastKey, Value q, bool interleaved, long headSize)
        {
            var start = pastKey is null ? ops.Int64Scalar(0) : ops.DimScalar(pastKey, 2);
            var length = ops.DimScalar(q, 1);
            var positions = ops.Op("Range", start, ops.Op("Add", start, length), ops.Int64Scalar(1));
            Value Rows(Value cache) => ops.Op("Gather", [ops.Float(cache), positions], Attr.Int("axis", 0)); // [S, R/2]
            long dim = cosCache.Shape is { Count: 2 } shape && shape[1].Value is long half ? 2 * half : headSize;
            return new Rotary(Rows(cosCache), Rows(sinCache), interleaved, dim, headSize);
        }

        /// <summary>[B, S, n, D] rotated.</summary>
        public Value Apply(ProbeOps ops, Value x)
        {
            var rotated = Dim < HeadSize ? ops.Slice(x, [0], [Dim], [3]) : x;
            Value result;
            if (!Interleaved)
            {
                var cos = ops.Unsqueeze(Cos, 1);                                   // [S, 1, R/2]
                var sin = ops.Unsqueeze(Sin, 1);
                var x1 = ops.Slice(rotated, [0], [Dim / 2], [3]);
                var x2 = ops.Slice(rotated, [Dim / 2], [Dim], [3]);
                result = ops.Op("Concat", [
                    ops.Op("Sub", ops.Op("Mul", x1, cos), ops.Op("Mul", x2, sin)),
                    ops.Op("Add", ops.Op("Mul", x2, cos), ops.Op("Mul", x1, sin))], Attr.Int("axis", 3));
            }
            else
            {
                var cos = ops.Unsqueeze(Cos, 1, 3);                                // [S, 1, R/2, 1]
                var sin = ops.Unsqueeze(Sin, 1, 3);
                var pairs = ops.Reshape(rotated, 0, 0, 0, Dim / 2, 2);
                var x1 = ops.Slice(pairs, [0], [1], [4]);
                var x2 = ops.Slice(pairs, [1], [2], [4]);
                var both = ops.Op("Concat", [
                    ops.Op("Sub", ops.Op("Mul", x1, cos), ops.Op("Mul", x2, sin)),
                    ops.Op("Add", ops.Op("Mul", x2, cos), ops.Op("Mul", x1, sin))], Attr.Int("axis", 4));
                result = ops.Reshape(both, 0, 0, 0, Dim);
            }
            return Dim < HeadSize ? ops.Op("Concat", [result, ops.Slice(x, [Dim], [HeadSize], [3])], Attr.Int("axis", 3)) : result;
        }
    }

    private static Node? CoreNode(AttentionRole attention) => attention.Form.Op switch
    {
        AttentionOp.GroupQueryAttention => attention.CoreNodes.FirstOrDefault(n => n.Is("GroupQueryAttention", "com.microsoft")),
        AttentionOp.MultiHeadAttention => attention.CoreNodes.FirstOrDefault(n => n.Is("MultiHeadAttention", "com.microsoft")),
        AttentionOp.Attention => attention.CoreNodes.FirstOrDefault(n => n.Is("Attention")),
        AttentionOp.MicrosoftAttention => attention.CoreNodes.FirstOrDefault(n => n.Is("Attention", "com.microsoft")),
        _ => null,
    };

    private static Value? KeyInput(AttentionRole attention, Node op) => op.Input(1);

    private static Value? PastKeyInput(AttentionRole attention, Node op)
    {
        int index = attention.Form.Op switch
        {
            AttentionOp.GroupQueryAttention => 3,
            AttentionOp.MultiHeadAttention => 6,
            AttentionOp.Attention => 4,
            AttentionOp.MicrosoftAttention => 4,
            _ => -1,
        };
        int rank = attention.Form.Op == AttentionOp.MicrosoftAttention ? 5 : 4;
        return index >= 0 && op.Input(index) is { } past && past.Shape?.Count == rank ? past : null;
    }

    private static string F(float v) => v.ToString("0.####", CultureInfo.InvariantCulture);
}
