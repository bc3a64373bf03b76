using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Encoder-decoder decoders (#7 item 7), on a synthetic graph shaped like HF's T5 decoder export (T5Stack with
/// is_decoder): T5's RMSNorm without mean (pow(2).mean -> rsqrt -> weight * x), self-attention without a scale whose scores
/// get the relative position bias (Gather of relative_attention_bias [buckets, heads] by bucketed distance, computed once and
/// reused by every layer, plus the causal mask), cross-attention with keys and values projected from encoder_hidden_states,
/// and a ReLU MLP. Runs in ONNX Runtime; recognized with the cross-attention attached to its block.</summary>
public class EncoderDecoderTests
{
    private const int D = 16, H = 2, Hd = 8, S = 5, T = 7, F = 32, Buckets = 8, Vocab = 40;

    /// <summary>T5 (RMSNorm without mean, relative position bias, unscaled scores, ReLU), Whisper (pre-norm LayerNorm, learned
    /// positions, scaled scores, biases on q/v/o, GELU) or BART (post-norm LayerNorm, biases on every projection, GELU).</summary>
    public enum Form { T5, Whisper, Bart }

    /// <summary>The cache as Optimum exports it: none; a first-step decoder (<c>decoder_model.onnx</c>) that emits
    /// <c>present.i.decoder.*</c> and the cross-attention's projected encoder keys/values as <c>present.i.encoder.*</c>; a
    /// decoder-with-past that appends to <c>past_key_values.i.decoder.*</c> and reads the encoder keys/values from
    /// <c>past_key_values.i.encoder.*</c> (no encoder_hidden_states input, no k/v projection in the cross-attention).</summary>
    public enum Cache { None, FirstStep, WithPast }

    /// <param name="combined">Encoder and decoder in one graph (<see cref="EncoderGraphs"/>): the cross-attention reads the
    /// encoder's last hidden state instead of an <c>encoder_hidden_states</c> input.</param>
    internal static Model Build(bool cross = true, int layers = 2, Form form = Form.T5, Cache cache = Cache.None, bool combined = false)
    {
        bool t5 = form == Form.T5, post = form == Form.Bart;
        var b = new GraphBuilder();
        var enc = combined ? EncoderGraphs.Add(b, form, layers, "encoder_input_ids")
            : cache == Cache.WithPast ? null : b.Input("encoder_hidden_states", TensorDataType.Float, 1, T, D);
        var ids = b.Input("input_ids", TensorDataType.Int64, 1, S);
        var rng = new Random(5);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => ((float)rng.NextDouble() - 0.5f) * 0.5f).ToArray();
        Value W(string name, int rows, int cols) => b.Initializer(name, Rand(rows * cols), rows, cols);
        Value I64(string name, params long[] v) => b.Initializer(name, v, v.Length);
        // T5LayerNorm: no mean subtraction, no bias.
        Value Norm(string name, Value x) => t5 ? Rms(name, x)
            : b.Node("LayerNormalization", [x, b.Initializer(name, Enumerable.Range(0, D).Select(i => 1f + 0.01f * i).ToArray(), D),
                b.Initializer(name.Replace("weight", "bias"), Rand(D), D)], [Attr.Float("epsilon", 1e-5f), Attr.Int("axis", -1)])[0];
        Value Linear(string name, Value x, int rows, int cols, bool bias) =>
            bias ? b.Op("Add", b.Op("MatMul", x, W(name, rows, cols)), b.Initializer(name.Replace("weight", "bias"), Rand(cols), cols)) : b.Op("MatMul", x, W(name, rows, cols));
        Value Act(Value v) => t5 ? b.Op("Relu", v)
            : b.Op("Mul", b.Op("Mul", v, b.Op("Add", b.Op("Erf", b.Op("Div", v, b.Scalar($"{v.Name}.sqrt2", MathF.Sqrt(2)))), b.Scalar($"{v.Name}.one", 1f))), b.Scalar($"{v.Name}.half", 0.5f));
        Value Rms(string name, Value x)
        {
            var variance = b.Node("ReduceMean", [b.Op("Pow", x, b.Scalar(name + ".two", 2f))], [Attr.Ints("axes", [-1]), Attr.Int("keepdims", 1)])[0];
            var normed = b.Op("Mul", x, b.Op("Reciprocal", b.Op("Sqrt", b.Op("Add", variance, b.Scalar(name + ".eps", 1e-6f)))));
            return b.Op("Mul", b.Initializer(name, Enumerable.Range(0, D).Select(i => 1f + 0.01f * i).ToArray(), D), normed);
        }
        Value Heads(Value x, string p, long len) => b.Node("Transpose", [b.Op("Reshape", x, I64(p + ".shape", 1, len, H, Hd))], [Attr.Ints("perm", [0, 2, 1, 3])])[0];
        // Keys and values in heads [1, H, len, Hd]; with a cache they are appended to the past (self-attention) or read from it
        // (cross-attention with past), and the result is also a present output.
        Value Cached(Value heads, string past, string present)
        {
            var all = cache == Cache.WithPast ? b.Node("Concat", [b.Input(past, TensorDataType.Float, 1, H, "past_sequence_length", Hd), heads], [Attr.Int("axis", 2)])[0] : heads;
            if (cache != Cache.None) b.Output(b.Node("Identity", [all], outputNames: [present])[0], TensorDataType.Float, 1, H, "total_sequence_length", Hd);
            return all;
        }
        Value Attention(string p, Value q, Value kHeads, Value vHeads, Value? bias)
        {
            var kt = b.Node("Transpose", [kHeads], [Attr.Ints("perm", [0, 1, 3, 2])])[0];
            var scores = b.Op("MatMul", Heads(q, p + ".q", S), kt); // T5: no 1/sqrt(d) scale
            if (!t5) scores = b.Op("Mul", scores, b.Scalar(p + ".scale", 1f / MathF.Sqrt(Hd)));
            if (bias is not null) scores = b.Op("Add", scores, bias);
            var probs = b.Node("Softmax", [scores], [Attr.Int("axis", -1)])[0];
            var ctx = b.Node("Transpose", [b.Op("MatMul", probs, vHeads)], [Attr.Ints("perm", [0, 2, 1, 3])])[0];
            return b.Op("Reshape", ctx, I64(p + ".merge", 1, S, D));
        }
        Value SelfAttention(string p, int l, Value h, bool qb, bool kb, bool vb, Value? bias) => Attention($"{p}.0.sa",
            Linear($"{p}.0.SelfAttention.q.weight", h, D, D, qb),
            Cached(Heads(Linear($"{p}.0.SelfAttention.k.weight", h, D, D, kb), $"{p}.0.sa.k", S), $"past_key_values.{l}.decoder.key", $"present.{l}.decoder.key"),
            Cached(Heads(Linear($"{p}.0.SelfAttention.v.weight", h, D, D, vb), $"{p}.0.sa.v", S), $"past_key_values.{l}.decoder.value", $"present.{l}.decoder.value"), bias);
        Value CrossKv(string p, int l, string kind, bool bias)
        {
            if (cache == Cache.WithPast) return b.Input($"past_key_values.{l}.encoder.{kind}", TensorDataType.Float, 1, H, "encoder_sequence_length", Hd);
            var heads = Heads(Linear($"{p}.1.EncDecAttention.{kind[0]}.weight", enc!, D, D, bias), $"{p}.1.ca.{kind[0]}", T);
            if (cache == Cache.FirstStep) b.Output(b.Node("Identity", [heads], outputNames: [$"present.{l}.encoder.{kind}"])[0], TensorDataType.Float, 1, H, T, Hd);
            return heads;
        }

        // T5 ties the encoder's and the decoder's token tables (one initializer in a combined graph).
        var x = b.Node("Gather", [b.Graph.FindInitializer("shared.weight") ?? b.Initializer("shared.weight", Rand(Vocab * D), Vocab, D), ids])[0];
        if (!t5) x = b.Op("Add", x, b.Initializer("decoder.embed_positions.weight", Rand(S * D), S, D));
        // Relative position bias (decoder: unidirectional buckets min(max(q - k, 0), buckets - 1)) plus the causal mask, once.
        var qPos = b.Op("Unsqueeze", b.Initializer("pos.q", Enumerable.Range(0, S).Select(i => (long)i).ToArray(), S), I64("pos.axis1", 1));
        var kPos = b.Op("Unsqueeze", b.Initializer("pos.k", Enumerable.Range(0, S).Select(i => (long)i).ToArray(), S), I64("pos.axis0", 0));
        var distance = b.Op("Sub", qPos, kPos);
        var bucket = b.Op("Min", b.Op("Max", distance, b.Scalar("pos.zero", 0L)), b.Scalar("pos.last", (long)Buckets - 1));
        var table = b.Initializer("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", Rand(Buckets * H), Buckets, H);
        var values = b.Node("Gather", [table, bucket], [Attr.Int("axis", 0)])[0]; // [S, S, H]
        var bias = b.Op("Unsqueeze", b.Node("Transpose", [values], [Attr.Ints("perm", [2, 0, 1])])[0], I64("pos.axis00", 0));
        var causal = b.Initializer("causal_mask", Enumerable.Range(0, S * S).Select(i => i % S <= i / S ? 0f : -1e9f).ToArray(), 1, 1, S, S);
        var positionBias = t5 ? b.Op("Add", bias, causal) : causal;

        for (int l = 0; l < layers; l++)
        {
            string p = $"decoder.block.{l}.layer";
            bool qb = !t5, kb = post, vb = !t5; // Whisper's k_proj has no bias; BART's has
            // Pre-norm: x + f(norm(x)); post-norm (BART): norm(x + f(x)).
            Value Sublayer(string normName, Func<Value, Value> f) => post ? Norm(normName, b.Op("Add", x, f(x))) : b.Op("Add", x, f(Norm(normName, x)));
            int layer = l;
            x = Sublayer($"{p}.0.layer_norm.weight", h => b.Op("MatMul", SelfAttention(p, layer, h, qb, kb, vb, positionBias), W($"{p}.0.SelfAttention.o.weight", D, D)));
            if (cross)
                x = Sublayer($"{p}.1.layer_norm.weight", h => b.Op("MatMul", Attention($"{p}.1.ca", Linear($"{p}.1.EncDecAttention.q.weight", h, D, D, qb),
                    CrossKv(p, layer, "key", kb), CrossKv(p, layer, "value", vb), null), W($"{p}.1.EncDecAttention.o.weight", D, D)));
            x = Sublayer($"{p}.2.layer_norm.weight", h => b.Op("MatMul", Act(b.Op("MatMul", h, W($"{p}.2.DenseReluDense.wi.weight", D, F))), W($"{p}.2.DenseReluDense.wo.weight", F, D)));
        }
        if (!post) x = Norm("decoder.final_layer_norm.weight", x);
        b.Output(b.Op("MatMul", x, W("lm_head.weight", D, Vocab)), TensorDataType.Float, 1, S, Vocab);
        return b.ToModel(irVersion: 8, new OpsetId("", 17));
    }

    [Theory]
    [InlineData(Form.T5)]
    [InlineData(Form.Whisper)]
    [InlineData(Form.Bart)]
    public void EncoderDecoderShapedDecoder_RunsInOnnxRuntime(Form form)
    {
        using var model = Build(form: form);
        using var dir = new TempFolder("t5");
        string path = dir.Path("decoder_model.onnx");
        ModelWriter.Save(model, path);
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(path, options);
        using var idv = OrtValue.CreateTensorValueFromMemory(new long[] { 3, 1, 4, 1, 5 }, [1, S]);
        using var encv = OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, T * D).Select(i => MathF.Sin(i)).ToArray(), [1, T, D]);
        using var outputs = session.Run(new RunOptions(), ["input_ids", "encoder_hidden_states"], [idv, encv], session.OutputNames);
        Assert.All(outputs[0].GetTensorDataAsSpan<float>().ToArray(), v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void T5ShapedDecoder_CrossAttentionPositionBiasAndRmsNorm()
    {
        using var model = Build();
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        Assert.Equal(ModelArchitecture.Decoder, s.Architecture);
        foreach (var blk in s.Blocks)
        {
            string p = $"decoder.block.{blk.Index}.layer";
            Assert.Empty(StructureReport.Missing(blk));
            Assert.Equal(NormPlacement.PreNorm, blk.Placement);
            // T5's RMSNorm without mean, gain first.
            Assert.Equal(NormKind.RmsNorm, blk.AttentionNorm!.Kind);
            Assert.Equal($"{p}.0.layer_norm.weight", blk.AttentionNorm.Gain.Name);
            Assert.Equal($"{p}.2.layer_norm.weight", blk.FfnNorm!.Gain.Name);
            var a = blk.Attention!;
            Assert.Equal($"{p}.0.SelfAttention.q.weight", a.Query!.Weight.Name);
            Assert.Equal(H, a.NumHeads);
            Assert.Equal(Hd, a.HeadSize);
            Assert.Equal(MaskKind.AdditiveBias, a.MaskRole.Kind);
            // Computed in block 0, reused by every block: the same table.
            Assert.Equal("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", a.PositionBias!.Table.Name);
            Assert.Equal(Buckets, a.PositionBias.Buckets);
            var c = blk.CrossAttention!;
            Assert.Equal("encoder_hidden_states", c.EncoderOutput!.Name);
            Assert.Equal($"{p}.1.EncDecAttention.q.weight", c.Attention.Query!.Weight.Name);
            Assert.Equal($"{p}.1.EncDecAttention.k.weight", c.Attention.Key!.Weight.Name);
            Assert.Equal($"{p}.1.EncDecAttention.v.weight", c.Attention.ValueProjection!.Weight.Name);
            Assert.Equal($"{p}.1.EncDecAttention.o.weight", c.Attention.Output!.Weight.Name);
            Assert.Equal($"{p}.1.layer_norm.weight", c.Norm!.Gain.Name);
            Assert.NotNull(c.Residual);
            Assert.Null(c.Attention.PositionBias);
            Assert.Equal($"{p}.2.DenseReluDense.wi.weight", blk.Ffn!.Up.Weight.Name);
        }
        Assert.Equal("decoder.final_layer_norm.weight", s.FinalNorm!.Gain.Name);
        Assert.Equal("lm_head.weight", s.LmHead!.Weight.Name);
        // The shared position-bias table is listed with both blocks that read it.
        Assert.Contains(s.SharedInitializers, x => x.Initializer.Name.EndsWith("relative_attention_bias.weight", StringComparison.Ordinal) && x.Uses.Count == 2);
        string text = StructureReport.ToText(result, explain: false);
        Assert.Contains("cross attn    decomposed: heads 2 head 8, keys/values from encoder_hidden_states", text);
        Assert.Contains("position bias relative decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight [8 buckets x 2 heads]", text);
        string json = StructureReport.Serialize(StructureReport.ToJson(result, includeTrace: false));
        Assert.Contains("\"crossAttention\"", json);
        Assert.Contains("\"positionBias\"", json);
    }

    [Theory]
    [InlineData(Form.Whisper, NormPlacement.PreNorm)]
    [InlineData(Form.Bart, NormPlacement.PostNorm)]
    public void WhisperAndBartShapedDecoders_CrossAttentionWithLayerNorms(Form form, NormPlacement placement)
    {
        using var model = Build(form: form);
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        Assert.Equal(ModelArchitecture.Decoder, s.Architecture);
        foreach (var blk in s.Blocks)
        {
            string p = $"decoder.block.{blk.Index}.layer";
            Assert.Empty(StructureReport.Missing(blk));
            Assert.Equal(placement, blk.Placement);
            Assert.Equal(NormKind.LayerNorm, blk.AttentionNorm!.Kind);
            Assert.Equal($"{p}.0.layer_norm.weight", blk.AttentionNorm.Gain.Name);
            Assert.Equal($"{p}.2.layer_norm.weight", blk.FfnNorm!.Gain.Name);
            Assert.Equal(H, blk.Attention!.NumHeads);
            Assert.Equal(Hd, blk.Attention.HeadSize);
            Assert.Null(blk.Attention.PositionBias);
            var c = blk.CrossAttention!;
            Assert.Equal("encoder_hidden_states", c.EncoderOutput!.Name);
            Assert.Equal($"{p}.1.EncDecAttention.k.weight", c.Attention.Key!.Weight.Name);
            Assert.Equal($"{p}.1.EncDecAttention.o.weight", c.Attention.Output!.Weight.Name);
            Assert.Equal(H, c.Attention.NumHeads);
            Assert.Equal($"{p}.1.layer_norm.weight", c.Norm!.Gain.Name);
            Assert.Equal(placement == NormPlacement.PostNorm, c.Residual!.Value == c.Norm.Output);
            Assert.Equal(FfnActivation.GeluErf, blk.Ffn!.Activation); // the exact (Erf) GELU of HF's "gelu"
        }
    }

    [Theory]
    [InlineData(Form.T5, Cache.FirstStep)]
    [InlineData(Form.T5, Cache.WithPast)]
    [InlineData(Form.Whisper, Cache.FirstStep)]
    [InlineData(Form.Whisper, Cache.WithPast)]
    [InlineData(Form.Bart, Cache.WithPast)]
    public void DecoderWithCache_RunsInOrt_SelfAndCrossCachesAreRoles(Form form, Cache cache)
    {
        using var model = Build(form: form, cache: cache);
        using var dir = new TempFolder("t5cache");
        string path = dir.Path("decoder_model.onnx");
        ModelWriter.Save(model, path);
        using (var session = SessionFactory.Open(path, SessionSettings.CpuUnoptimized))
        {
            // An empty self-attention past (the bias and causal mask are S x S); the cross cache holds T encoder positions.
            var inputs = new List<TensorData> { TensorData.Create("input_ids", new long[] { 3, 1, 4, 1, 5 }, 1, S) };
            foreach (var spec in session.Inputs.Where(i => i.Name != "input_ids"))
            {
                bool encoderLength = spec.Name.Contains("encoder", StringComparison.Ordinal);
                long[] dims = spec.Name == "encoder_hidden_states" ? [1, T, D] : [1, H, encoderLength ? T : 0, Hd];
                inputs.Add(TensorData.Create(spec.Name, Enumerable.Range(0, (int)dims.Aggregate(1L, (a, d) => a * d)).Select(i => MathF.Sin(0.7f * i)).ToArray(), dims));
            }
            var outputs = session.Run(inputs);
            Assert.All(outputs, o => Assert.All(o.ToSingleArray(), v => Assert.True(float.IsFinite(v))));
            Assert.Equal(cache == Cache.FirstStep ? 9 : 5, outputs.Count); // logits + 4 or 2 present tensors per layer
        }
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        foreach (var blk in s.Blocks)
        {
            int l = blk.Index;
            Assert.Empty(StructureReport.Missing(blk));
            var self = blk.Attention!.Cache!;
            Assert.Equal(($"present.{l}.decoder.key", $"present.{l}.decoder.value"), (self.PresentKey?.Name, self.PresentValue?.Name));
            Assert.Equal(cache == Cache.WithPast ? $"past_key_values.{l}.decoder.key" : null, self.PastKey?.Name);
            var c = blk.CrossAttention!;
            Assert.Equal($"decoder.block.{l}.layer.1.EncDecAttention.q.weight", c.Attention.Query!.Weight.Name);
            Assert.Equal($"decoder.block.{l}.layer.1.EncDecAttention.o.weight", c.Attention.Output!.Weight.Name);
            Assert.Equal(H, c.Attention.NumHeads);
            Assert.Equal(Hd, c.Attention.HeadSize);
            var cross = c.Cache!;
            if (cache == Cache.WithPast)
            {
                Assert.Null(c.EncoderOutput);
                Assert.True(c.Attention.KeysAndValuesFromCache);
                Assert.Null(c.Attention.Key);
                Assert.Equal(($"past_key_values.{l}.encoder.key", $"past_key_values.{l}.encoder.value"), (cross.PastKey?.Name, cross.PastValue?.Name));
                Assert.Null(cross.PresentKey);
            }
            else
            {
                Assert.Equal("encoder_hidden_states", c.EncoderOutput!.Name);
                Assert.Equal($"decoder.block.{l}.layer.1.EncDecAttention.k.weight", c.Attention.Key!.Weight.Name);
                Assert.Equal(($"present.{l}.encoder.key", $"present.{l}.encoder.value"), (cross.PresentKey?.Name, cross.PresentValue?.Name));
                Assert.Null(cross.PastKey);
            }
        }
        var lines = StructureReport.ToText(result, explain: false).Split('\n');
        Assert.Contains(lines, line => line.StartsWith("  cross kv      ", StringComparison.Ordinal) && line.Contains(cache == Cache.WithPast ? "past past_key_values.0.encoder.key/past_key_values.0.encoder.value -> present -/-" : "past -/- -> present present.0.encoder.key/present.0.encoder.value", StringComparison.Ordinal));
        if (cache == Cache.WithPast) Assert.Contains(lines, line => line.Contains("keys/values from the cache", StringComparison.Ordinal));
        var json = StructureReport.ToJson(result, includeTrace: false).Blocks[1].CrossAttention!;
        Assert.Equal(cache == Cache.WithPast ? null : "encoder_hidden_states", json.EncoderOutput);
        Assert.Equal(1, json.KvCache!.Layer);
        Assert.Equal(cache == Cache.WithPast ? "past_key_values.1.encoder.value" : "present.1.encoder.value", json.KvCache.PastValue ?? json.KvCache.PresentValue);
    }

    [Fact]
    public void CrossAttentionWithoutItsNorm_IsReportedMissing()
    {
        // Missing() checks the cross-attention too: a block whose cross-attention lost its norm is incomplete.
        using var model = Build();
        var blk = StructureRecognizer.Recognize(model).Structure!.Blocks[0];
        Assert.Empty(StructureReport.Missing(blk));
        var broken = blk with { CrossAttention = blk.CrossAttention! with { Norm = null, Residual = null } };
        Assert.Equal(["crossAttention.norm", "crossAttention.residual"], StructureReport.Missing(broken));
    }

    [Fact]
    public void DecoderWithoutCrossAttention_HasNone()
    {
        using var model = Build(cross: false);
        var s = StructureRecognizer.Recognize(model).Structure!;
        Assert.Equal(2, s.Blocks.Count);
        Assert.All(s.Blocks, blk => Assert.Null(blk.CrossAttention));
        Assert.All(s.Blocks, blk => Assert.NotNull(blk.Attention!.PositionBias));
    }
}

/// <summary>The fused form ORT's transformer optimizer writes for T5: com.microsoft RelativePositionBias(bias_table [buckets,
/// heads], query_length, key_length) feeding MultiHeadAttention's attention_bias.</summary>
public class FusedRelativePositionBiasTests
{
    private const int D = 16, H = 2, S = 5, F = 32, Buckets = 8;

    private static Model Build()
    {
        var b = new GraphBuilder();
        var x = b.Input("inputs_embeds", TensorDataType.Float, 1, S, D);
        var rng = new Random(9);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => ((float)rng.NextDouble() - 0.5f) * 0.5f).ToArray();
        Value W(string name, int rows, int cols) => b.Initializer(name, Rand(rows * cols), rows, cols);
        Value Norm(string name, Value v) => b.Node("SimplifiedLayerNormalization", [v, b.Initializer(name, Enumerable.Repeat(1f, D).ToArray(), D)], [Attr.Float("epsilon", 1e-6f)])[0];
        var table = b.Initializer("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", Rand(Buckets * H), Buckets, H);
        var length = b.Scalar("seq_len", (long)S);
        var bias = b.Node("RelativePositionBias", [table, length, length], [Attr.Int("max_distance", 16), Attr.Int("is_bidirectional", 1)], domain: "com.microsoft")[0];
        var h = Norm("layer.0.layer_norm.weight", x);
        var attn = b.Node("MultiHeadAttention", [b.Op("MatMul", h, W("q.weight", D, D)), b.Op("MatMul", h, W("k.weight", D, D)), b.Op("MatMul", h, W("v.weight", D, D)),
            null, null, bias], [Attr.Int("num_heads", H), Attr.Float("scale", 1f)], domain: "com.microsoft")[0];
        x = b.Op("Add", x, b.Op("MatMul", attn, W("o.weight", D, D)));
        var h2 = Norm("layer.1.layer_norm.weight", x);
        x = b.Op("Add", x, b.Op("MatMul", b.Op("Relu", b.Op("MatMul", h2, W("wi.weight", D, F))), W("wo.weight", F, D)));
        b.Output(b.Op("MatMul", Norm("final_layer_norm.weight", x), W("lm_head.weight", D, 40)), TensorDataType.Float, 1, S, 40);
        return b.ToModel(irVersion: 8, new OpsetId("", 17), new OpsetId("com.microsoft", 1));
    }

    [Fact]
    public void FusedRelativePositionBias_IsThePositionBias()
    {
        // Recognized only: ORT has no CPU kernel for RelativePositionBias (CUDA only), so this graph is not run here.
        using var model = Build();
        var a = StructureRecognizer.Recognize(model).Structure!.Blocks.Single().Attention!;
        Assert.Equal(AttentionForm.MultiHeadAttention, a.Form);
        Assert.Equal(MaskKind.AdditiveBias, a.MaskRole.Kind);
        Assert.Equal(5, a.MaskRole.Inputs[0].InputIndex);
        Assert.Equal("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", a.PositionBias!.Table.Name);
        Assert.Equal("RelativePositionBias", a.PositionBias.Gather.OpType);
        Assert.Equal(Buckets, a.PositionBias.Buckets);
    }
}
