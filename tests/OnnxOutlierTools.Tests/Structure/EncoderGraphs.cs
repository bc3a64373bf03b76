using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;
using Form = OnnxOutlierTools.Tests.Structure.EncoderDecoderTests.Form;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Synthetic encoders shaped like HF's exports of T5's, Whisper's and BART's encoder stacks (the graph Optimum writes
/// as <c>encoder_model.onnx</c>): bidirectional self-attention without a causal mask; T5 with RMSNorm without mean, unscaled
/// scores and the bidirectional relative position bias (positions from Range, buckets by sign and distance, one table computed
/// once and reused by every layer) plus the padding mask; Whisper with a Conv1d front end over log-mel features, learned
/// positions, pre-norm LayerNorm, scaled scores and no mask at all; BART post-norm with a LayerNorm on the embedding and the
/// padding mask. <see cref="Add"/> writes into a caller's builder so a combined encoder+decoder graph can feed the output to
/// the decoder's cross-attention.</summary>
internal static class EncoderGraphs
{
    public const int D = 16, H = 2, Hd = 8, T = 7, F = 32, Buckets = 8, Vocab = 40, Mel = 8;

    public static Model Build(Form form, int layers = 2, bool causalMask = false)
    {
        var b = new GraphBuilder();
        var output = Add(b, form, layers, "input_ids", causalMask);
        b.Output(output, TensorDataType.Float, 1, T, D);
        return b.ToModel(irVersion: 8, new OpsetId("", 17));
    }

    /// <summary>The encoder's inputs (<paramref name="idsName"/> and attention_mask, or input_features for Whisper) and
    /// blocks; returns its last hidden state [1, T, D]. <paramref name="causalMask"/> adds a precomputed [1, 1, T, T] causal mask
    /// to the scores (a near miss: then it is not an encoder).</summary>
    public static Value Add(GraphBuilder b, Form form, int layers, string idsName, bool causalMask = false)
    {
        bool t5 = form == Form.T5, post = form == Form.Bart, whisper = form == Form.Whisper;
        var rng = new Random(17);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => ((float)rng.NextDouble() - 0.5f) * 0.5f).ToArray();
        Value W(string name, int rows, int cols) => b.Initializer(name, Rand(rows * cols), rows, cols);
        Value I64(string name, params long[] v) => b.Initializer(name, v, v.Length);
        Value Gain(string name) => b.Initializer(name, Enumerable.Range(0, D).Select(i => 1f + 0.01f * i).ToArray(), D);
        Value Norm(string name, Value x)
        {
            if (!t5)
                return b.Node("LayerNormalization", [x, Gain(name), b.Initializer(name.Replace("weight", "bias"), Rand(D), D)],
                    [Attr.Float("epsilon", 1e-5f), Attr.Int("axis", -1)])[0];
            var variance = b.Node("ReduceMean", [b.Op("Pow", x, b.Scalar(name + ".two", 2f))], [Attr.Ints("axes", [-1]), Attr.Int("keepdims", 1)])[0];
            return b.Op("Mul", Gain(name), b.Op("Mul", x, b.Op("Reciprocal", b.Op("Sqrt", b.Op("Add", variance, b.Scalar(name + ".eps", 1e-6f))))));
        }
        Value Linear(string name, Value x, int rows, int cols, bool bias) =>
            bias ? b.Op("Add", b.Op("MatMul", x, W(name, rows, cols)), b.Initializer(name.Replace("weight", "bias"), Rand(cols), cols)) : b.Op("MatMul", x, W(name, rows, cols));
        Value Gelu(Value v) => b.Op("Mul", b.Op("Mul", v, b.Op("Add", b.Op("Erf", b.Op("Div", v, b.Scalar($"{v.Name}.sqrt2", MathF.Sqrt(2)))), b.Scalar($"{v.Name}.one", 1f))), b.Scalar($"{v.Name}.half", 0.5f));
        Value Heads(Value x, string p) => b.Node("Transpose", [b.Op("Reshape", x, I64(p + ".shape", 1, T, H, Hd))], [Attr.Ints("perm", [0, 2, 1, 3])])[0];

        Value x;
        Value? padding = null;
        if (whisper)
        {
            // Whisper: two Conv1d (the second with stride 2) + GELU over [1, mel, 2T] features, then learned positions.
            var features = b.Input("input_features", TensorDataType.Float, 1, Mel, 2 * T);
            var c1 = b.Node("Conv", [features, b.Initializer("encoder.conv1.weight", Rand(D * Mel * 3), D, Mel, 3), b.Initializer("encoder.conv1.bias", Rand(D), D)],
                [Attr.Ints("pads", 1, 1), Attr.Ints("kernel_shape", 3)])[0];
            var c2 = b.Node("Conv", [Gelu(c1), b.Initializer("encoder.conv2.weight", Rand(D * D * 3), D, D, 3), b.Initializer("encoder.conv2.bias", Rand(D), D)],
                [Attr.Ints("pads", 1, 1), Attr.Ints("kernel_shape", 3), Attr.Ints("strides", 2)])[0];
            x = b.Op("Add", b.Node("Transpose", [Gelu(c2)], [Attr.Ints("perm", 0, 2, 1)])[0], b.Initializer("encoder.embed_positions.weight", Rand(T * D), T, D));
        }
        else
        {
            var ids = b.Input(idsName, TensorDataType.Int64, 1, T);
            var mask = b.Input(idsName == "input_ids" ? "attention_mask" : "encoder_attention_mask", TensorDataType.Int64, 1, T);
            x = b.Node("Gather", [b.Graph.FindInitializer("shared.weight") ?? b.Initializer("shared.weight", Rand(Vocab * D), Vocab, D), ids])[0];
            if (post) x = Norm("encoder.layernorm_embedding.weight", b.Op("Add", x, b.Initializer("encoder.embed_positions.weight", Rand(T * D), T, D)));
            // HF's extended mask: (1 - mask) * large negative, [1, 1, 1, T]: padding only, every query sees every key.
            var keep = b.Node("Cast", [mask], [Attr.Int("to", (int)TensorDataType.Float)])[0];
            padding = b.Op("Unsqueeze", b.Op("Mul", b.Op("Sub", b.Scalar("enc.mask.one", 1f), keep), b.Scalar("enc.mask.min", -1e9f)), I64("enc.mask.axes", 1, 2));
        }

        // T5's bidirectional buckets: positions from Range, half the buckets by sign, the distance clipped.
        Value? scoreBias = padding;
        if (t5)
        {
            var length = b.Node("Gather", [b.Op("Shape", b.Graph.FindValue(idsName)!), b.Scalar("enc.pos.dim1", 1L)], [Attr.Int("axis", 0)])[0];
            var positions = b.Op("Range", b.Scalar("enc.pos.start", 0L), length, b.Scalar("enc.pos.step", 1L));
            var rel = b.Op("Sub", b.Op("Unsqueeze", positions, I64("enc.pos.axis0", 0)), b.Op("Unsqueeze", positions, I64("enc.pos.axis1", 1)));
            var sign = b.Op("Mul", b.Node("Cast", [b.Op("Greater", rel, b.Scalar("enc.pos.zero", 0L))], [Attr.Int("to", (int)TensorDataType.Int64)])[0], b.Scalar("enc.pos.half", (long)Buckets / 2));
            var bucket = b.Op("Add", sign, b.Op("Min", b.Op("Abs", rel), b.Scalar("enc.pos.last", (long)Buckets / 2 - 1)));
            var table = b.Initializer("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", Rand(Buckets * H), Buckets, H);
            var bias = b.Op("Unsqueeze", b.Node("Transpose", [b.Node("Gather", [table, bucket], [Attr.Int("axis", 0)])[0]], [Attr.Ints("perm", [2, 0, 1])])[0], I64("enc.pos.axis00", 0));
            scoreBias = b.Op("Add", bias, padding!);
        }

        if (causalMask)
        {
            var causal = b.Initializer("enc.causal_mask", Enumerable.Range(0, T * T).Select(i => i % T <= i / T ? 0f : -1e9f).ToArray(), 1, 1, T, T);
            scoreBias = scoreBias is null ? causal : b.Op("Add", scoreBias, causal);
        }

        for (int l = 0; l < layers; l++)
        {
            string p = $"encoder.block.{l}.layer";
            Value Attention(Value h)
            {
                var q = Linear($"{p}.0.SelfAttention.q.weight", h, D, D, !t5);
                var k = Linear($"{p}.0.SelfAttention.k.weight", h, D, D, post);
                var v = Linear($"{p}.0.SelfAttention.v.weight", h, D, D, !t5);
                var scores = b.Op("MatMul", Heads(q, $"{p}.q"), b.Node("Transpose", [Heads(k, $"{p}.k")], [Attr.Ints("perm", [0, 1, 3, 2])])[0]);
                if (!t5) scores = b.Op("Mul", scores, b.Scalar($"{p}.scale", 1f / MathF.Sqrt(Hd)));
                if (scoreBias is not null) scores = b.Op("Add", scores, scoreBias);
                var ctx = b.Node("Transpose", [b.Op("MatMul", b.Node("Softmax", [scores], [Attr.Int("axis", -1)])[0], Heads(v, $"{p}.v"))], [Attr.Ints("perm", [0, 2, 1, 3])])[0];
                return b.Op("MatMul", b.Op("Reshape", ctx, I64($"{p}.merge", 1, T, D)), W($"{p}.0.SelfAttention.o.weight", D, D));
            }
            Value Ffn(Value h)
            {
                var inner = b.Op("MatMul", h, W($"{p}.1.DenseReluDense.wi.weight", D, F));
                return b.Op("MatMul", t5 ? b.Op("Relu", inner) : Gelu(inner), W($"{p}.1.DenseReluDense.wo.weight", F, D));
            }
            Value Sublayer(string normName, Func<Value, Value> f) => post ? Norm(normName, b.Op("Add", x, f(x))) : b.Op("Add", x, f(Norm(normName, x)));
            x = Sublayer($"{p}.0.layer_norm.weight", Attention);
            x = Sublayer($"{p}.1.layer_norm.weight", Ffn);
        }
        return post ? x : Norm("encoder.final_layer_norm.weight", x);
    }
}
