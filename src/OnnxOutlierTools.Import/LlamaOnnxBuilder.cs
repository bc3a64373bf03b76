using OnnxOutlierTools.Import.Onnx;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Import;

/// <summary>The exporter flavour an ONNX Llama graph imitates (see docs/EXPORTS.md).</summary>
public enum LlamaOnnxFlavour
{
    /// <summary>torch.onnx / Optimum "text-generation": opset 14, everything decomposed (Pow/ReduceMean RMSNorm,
    /// MatMul projections, Slice/Neg/Concat rotate-half RoPE, Unsqueeze/Expand/Reshape repeat-kv,
    /// MatMul/Div/Add/Softmax/MatMul attention, Sigmoid*Mul SwiGLU). Inputs input_ids, attention_mask,
    /// position_ids; output logits.</summary>
    Decomposed,

    /// <summary><see cref="Decomposed"/> plus KV cache ("text-generation-with-past"): inputs
    /// past_key_values.{i}.key/value [batch, kv_heads, past, head_size], outputs present.{i}.key/value
    /// (keys after RoPE, before repeat-kv); an empty past (length 0) is accepted.</summary>
    DecomposedWithPast,

    /// <summary>onnxruntime-genai model builder (CPU, GroupQueryAttention): ai.onnx 14 + com.microsoft 1,
    /// SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization, packed qkv_proj MatMul feeding
    /// GroupQueryAttention with rotary inside (or, see <see cref="GqaRotary"/>, q/k/v MatMuls and RotaryEmbedding
    /// nodes in front of it), attention_mask as the only mask input.</summary>
    GenAiGqa,
}

/// <summary>Where the <see cref="LlamaOnnxFlavour.GenAiGqa"/> flavour applies RoPE.</summary>
public enum GqaRotary
{
    /// <summary><see cref="Fused"/> when head_size is a multiple of 16, otherwise <see cref="Separate"/>.</summary>
    Auto,

    /// <summary>Inside GroupQueryAttention (do_rotary=1, cos_cache/sin_cache inputs) fed by one packed qkv_proj
    /// MatMul: the builder's CPU default. ONNX Runtime's kernel requires head_size to be a multiple of 16.</summary>
    Fused,

    /// <summary>q_proj/k_proj/v_proj MatMuls, com.microsoft RotaryEmbedding on q and k (position ids computed
    /// from attention_mask in-graph), then GroupQueryAttention with do_rotary=0: the builder's form when rotary
    /// is not fused into attention. Works for any even head_size.</summary>
    Separate,
}

/// <summary>Options of <see cref="LlamaOnnxBuilder"/>. Validated when a model is built.</summary>
public sealed record LlamaOnnxOptions
{
    public LlamaOnnxFlavour Flavour { get; init; } = LlamaOnnxFlavour.Decomposed;

    /// <summary>Type of the weights and of the activations, past/present and logits: FLOAT or FLOAT16.
    /// With FLOAT16 the decomposed RMSNorm computes in float32 between two Casts, as HF's LlamaRMSNorm does.</summary>
    public TensorDataType WeightType { get; init; } = TensorDataType.Float;

    /// <summary>RoPE placement for <see cref="LlamaOnnxFlavour.GenAiGqa"/> (ignored by the other flavours).</summary>
    public GqaRotary GqaRotary { get; init; } = GqaRotary.Auto;

    /// <summary>Recorded as the model's doc_string (where the weights came from).</summary>
    public string? Description { get; init; }

    /// <summary>Newer architectures' variants (QK-norm, sandwich norms, gated output, ...); none by default.</summary>
    public DecoderVariants Variants { get; init; } = new();

    internal void Validate()
    {
        if (!Enum.IsDefined(Flavour)) throw new ArgumentException($"unknown flavour {Flavour}", nameof(Flavour));
        if (!Enum.IsDefined(GqaRotary)) throw new ArgumentException($"unknown GQA rotary placement {GqaRotary}", nameof(GqaRotary));
        if (WeightType is not (TensorDataType.Float or TensorDataType.Float16))
            throw new ArgumentException($"weight type must be FLOAT or FLOAT16, got {WeightType.OnnxName()}", nameof(WeightType));
        ArgumentNullException.ThrowIfNull(Variants);
    }
}

/// <summary>
/// Writes a Llama-style decoder as an ONNX <see cref="Model"/> in one of the exporters' flavours, with the
/// exporters' node and initializer names. Weight layout choices (documented for the toolkit's passes):
/// <list type="bullet">
/// <item>Projections are MatMul with [in, out] initializers named like HF parameters
/// (<c>model.layers.{i}.self_attn.q_proj.weight</c> for the decomposed flavours, genai's
/// <c>model.layers.{i}.attn.qkv_proj.MatMul.weight</c> for the builder flavour).</item>
/// <item>Decomposed flavours use rotate-half RoPE: wq/wk output columns are permuted per head from
/// llama2.c's interleaved pairs as HF's converter does, so q/k (and present keys) are in HF order.
/// The builder flavour keeps the checkpoint's order and sets GroupQueryAttention's rotary_interleaved.</item>
/// <item>A shared classifier is written as a transposed copy <c>lm_head.weight</c> [dim, vocab] next to the
/// embedding table (as torch.onnx exports a tied lm_head), so an edit of one leaves the other alone.</item>
/// </list>
/// </summary>
public static class LlamaOnnxBuilder
{
    public const string ProducerName = "OnnxOutlierTools.Import";
    private const long IrVersion = 8;

    public static Model Build(DecoderWeights weights, LlamaOnnxOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        options ??= new LlamaOnnxOptions();
        options.Validate();
        return Build(weights.Config, new DecoderWeightSource(weights, options.WeightType), options);
    }

    internal static Model Build(DecoderConfig config, WeightSource weights, LlamaOnnxOptions options)
    {
        options.Validate();
        if (weights.DataType != options.WeightType)
            throw new ArgumentException($"weight source is {weights.DataType.OnnxName()}, options ask for {options.WeightType.OnnxName()}");
        var model = options.Flavour switch
        {
            LlamaOnnxFlavour.Decomposed => Decomposed(config, weights, withPast: false, options.Variants),
            LlamaOnnxFlavour.DecomposedWithPast => Decomposed(config, weights, withPast: true, options.Variants),
            _ => GenAiGqa(config, weights, options.GqaRotary, options.Variants),
        };
        if (options.Variants.Any) model.Metadata.Add(new("onnx_outlier_tools.variants", options.Variants.ToString()));
        model.ProducerName = ProducerName;
        model.ProducerVersion = "1";
        model.DocString = options.Description;
        model.Metadata.Add(new("onnx_outlier_tools.flavour", options.Flavour.ToString()));
        return model;
    }

    // ---- decomposed (torch.onnx / Optimum-like) ----------------------------------------------------

    /// <summary>A decomposed decoder; <paramref name="presentsWithoutPast"/> makes a decoder without past emit its keys and
    /// values as <c>present.{i}.*</c> (the no-cache branch of an Optimum merged decoder, <see cref="MergedDecoder"/>).</summary>
    internal static Model Decomposed(DecoderConfig c, WeightSource w, bool withPast, DecoderVariants vr, bool presentsWithoutPast = false)
    {
        vr.Validate(withPast ? LlamaOnnxFlavour.DecomposedWithPast : LlamaOnnxFlavour.Decomposed, fusedRotary: false);
        var dt = w.DataType;
        var g = new Graph("main_graph");
        var b = new GraphWriter(g, OutputNaming.Torch);
        long D = c.Dim, H = c.Heads, KV = c.KvHeads, hs = c.HeadSize, V = c.VocabSize;
        var batch = Dim.Symbolic("batch_size");
        var seq = Dim.Symbolic("sequence_length");
        var past = Dim.Symbolic("past_sequence_length");
        var total = Dim.Symbolic(withPast ? "past_sequence_length + sequence_length" : "sequence_length");

        // inputs_embeds replaces input_ids when the token embedding lives in another model (SplitEmbedding).
        var inputIds = vr.InputsEmbeds ? b.Input("inputs_embeds", dt, [batch, seq, new Dim(D)]) : b.Input("input_ids", TensorDataType.Int64, [batch, seq]);
        var mask = b.Input("attention_mask", TensorDataType.Int64, [batch, total]);
        var positions = b.Input("position_ids", TensorDataType.Int64, [batch, seq]);
        var pastKeys = new Value[c.Layers];
        var pastValues = new Value[c.Layers];
        if (withPast)
            for (int i = 0; i < c.Layers; i++)
            {
                pastKeys[i] = b.Input($"past_key_values.{i}.key", dt, [batch, new Dim(KV), past, new Dim(hs)]);
                pastValues[i] = b.Input($"past_key_values.{i}.value", dt, [batch, new Dim(KV), past, new Dim(hs)]);
            }

        var hidden = vr.InputsEmbeds ? inputIds
            : b.Op("/model/embed_tokens", "Gather", [b.Init("model.embed_tokens.weight", w.Get(WeightRole.Embedding, -1, [V, D], false)), inputIds]);
        if (vr.EmbeddingScale)
            hidden = b.Op("/model", "Mul", [hidden, b.Const("/model", GraphWriter.Scalar(dt, EmbedScale(D)))]);

        // Additive attention bias [B, 1, S, T]: 0 where key j <= query position (P + i) and attention_mask[j] = 1,
        // the type's lowest value elsewhere (HF's AttentionMaskConverter result, built directly).
        const string m = "/model/attn_mask";
        var maskShape = b.Op(m, "Shape", [mask]);
        var totalLen = b.Op(m, "Gather", [maskShape, b.Const(m, GraphWriter.I64Scalar(1))], [Attr.Int("axis", 0)]);
        var idsShape = b.Op(m, "Shape", [inputIds]);
        var seqLen = b.Op(m, "Gather", [idsShape, b.Const(m, GraphWriter.I64Scalar(1))], [Attr.Int("axis", 0)]);
        var pastLen = b.Op(m, "Sub", [totalLen, seqLen]);
        var one = b.Const(m, GraphWriter.I64Scalar(1));
        var queryPos = b.Op(m, "Range", [pastLen, totalLen, one]);
        var keyPos = b.Op(m, "Range", [b.Const(m, GraphWriter.I64Scalar(0)), totalLen, one]);
        var queryCol = b.Op(m, "Unsqueeze", [queryPos, b.Const(m, GraphWriter.I64(1))]);
        var causal = b.Op(m, "LessOrEqual", [keyPos, queryCol]);
        var padBool = b.Op(m, "Cast", [mask], [Attr.Int("to", (long)TensorDataType.Bool)]);
        var pad4 = b.Op(m, "Unsqueeze", [padBool, b.Const(m, GraphWriter.I64(1, 2))]);
        var allowed = b.Op(m, "And", [causal, pad4]);
        var attnBias = b.Op(m, "Where", [allowed, b.Const(m, GraphWriter.Scalar(dt, 0f)), b.Const(m, GraphWriter.Scalar(dt, GraphWriter.Lowest(dt)))]);
        Value? slidingBias = null;
        if (vr.SlidingWindow is int window)
        {
            // HF's sliding_window_overlay: key j is kept while j > i - window.
            const string sw = "/model/sliding_window_mask";
            var lowest = b.Op(sw, "Sub", [queryCol, b.Const(sw, GraphWriter.I64Scalar(window))]);
            var inWindow = b.Op(sw, "Greater", [keyPos, lowest]);
            var allowedWindow = b.Op(sw, "And", [allowed, inWindow]);
            slidingBias = b.Op(sw, "Where", [allowedWindow, b.Const(sw, GraphWriter.Scalar(dt, 0f)), b.Const(sw, GraphWriter.Scalar(dt, GraphWriter.Lowest(dt)))]);
        }

        // RoPE tables [max_seq, head_size] (rotate-half form), gathered by position_ids -> [B, 1, S, head_size].
        const string r = "/model/rotary_emb";
        var (cosTable, sinTable) = Rope.RotateHalfTables(c, c.MaxSeqLen);
        var cosInit = b.Init("model.rotary_emb.cos_cached", DecoderWeightSource.ToTensor(cosTable, [c.MaxSeqLen, hs], dt));
        var sinInit = b.Init("model.rotary_emb.sin_cached", DecoderWeightSource.ToTensor(sinTable, [c.MaxSeqLen, hs], dt));
        var axis1 = b.Const(r, GraphWriter.I64(1));
        var cos = b.Op(r, "Unsqueeze", [b.Op(r, "Gather", [cosInit, positions], [Attr.Int("axis", 0)]), axis1]);
        var sin = b.Op(r, "Unsqueeze", [b.Op(r, "Gather", [sinInit, positions], [Attr.Int("axis", 0)]), axis1]);

        var presents = new List<Value>();
        for (int i = 0; i < c.Layers; i++)
        {
            string L = $"/model/layers.{i}";
            string P = $"model.layers.{i}";
            Value Gain(string scope, string name, Tensor gamma)
            {
                var init = b.Init(name, gamma);
                return vr.GainStyle == NormGainStyle.OnePlus ? b.Op(scope, "Add", [init, b.Const(scope, GraphWriter.Scalar(dt, 1f))]) : init;
            }
            Value Norm(string scope, Value input, string weight, Tensor gamma) => RmsNorm(b, scope, input, Gain(scope, weight, gamma), c.NormEps, dt);
            var x = vr.BlockNorms == BlockNormLayout.PostOnly ? hidden
                : Norm($"{L}/input_layernorm", hidden, $"{P}.input_layernorm.weight", w.Get(WeightRole.AttentionNorm, i, [D], false));

            string a = $"{L}/self_attn";
            Value q, gate = null!;
            if (vr.GatedOutput)
            {
                // Qwen3.5: q_proj [D, 2D] -> Reshape [B, S, H, 2hs] -> Split (query, gate) -> Reshape [B, S, D] each.
                var packed = DecoderVariants.PackQueryGate(w.Get(WeightRole.Q, i, [D, D], true), DecoderVariants.Extra($"{P}.gate", [D, D], false, dt), H, hs, dt);
                var qg = b.Op($"{a}/q_proj", "MatMul", [x, b.Init($"{P}.self_attn.q_proj.weight", packed)]);
                var split = b.Node("", "Split", $"{a}/Split", [b.Op(a, "Reshape", [qg, b.Const(a, GraphWriter.I64(0, 0, H, 2 * hs))]), b.Const(a, GraphWriter.I64(hs, hs))],
                    [b.OutputName($"{a}/Split"), b.OutputName($"{a}/Split", 1)], [Attr.Int("axis", -1)]);
                q = b.Op(a, "Reshape", [split.Outputs[0], b.Const(a, GraphWriter.I64(0, 0, D))]);
                gate = b.Op(a, "Sigmoid", [b.Op(a, "Reshape", [split.Outputs[1], b.Const(a, GraphWriter.I64(0, 0, D))])]);
            }
            else q = b.Op($"{a}/q_proj", "MatMul", [x, b.Init($"{P}.self_attn.q_proj.weight", w.Get(WeightRole.Q, i, [D, D], true))]);
            var k = b.Op($"{a}/k_proj", "MatMul", [x, b.Init($"{P}.self_attn.k_proj.weight", w.Get(WeightRole.K, i, [D, c.KvDim], true))]);
            var v = b.Op($"{a}/v_proj", "MatMul", [x, b.Init($"{P}.self_attn.v_proj.weight", w.Get(WeightRole.V, i, [D, c.KvDim], false))]);
            Value QkHeads(string which, Value t, long heads)
            {
                string scope = $"{a}/{which}_norm";
                string weight = $"{P}.self_attn.{which}_norm.weight";
                switch (vr.QkNorm)
                {
                    case QkNormStyle.PerHead:
                        var perHead = RmsNorm(b, scope, b.Op(a, "Reshape", [t, b.Const(a, GraphWriter.I64(0, 0, heads, hs))]),
                            b.Init(weight, DecoderVariants.Extra(weight, [hs], true, dt)), c.NormEps, dt);
                        return b.Op(a, "Transpose", [perHead], [GraphWriter.Perm(0, 2, 1, 3)]);
                    case QkNormStyle.FullWidth:
                        return SplitHeads(b, a, RmsNorm(b, scope, t, b.Init(weight, DecoderVariants.Extra(weight, [heads * hs], true, dt)), c.NormEps, dt), heads, hs);
                    default:
                        return SplitHeads(b, a, t, heads, hs);
                }
            }
            var q4 = QkHeads("q", q, H);
            var k4 = QkHeads("k", k, KV);
            var v4 = SplitHeads(b, a, v, KV, hs);
            q4 = RotateHalf(b, a, q4, cos, sin, hs);
            k4 = RotateHalf(b, a, k4, cos, sin, hs);
            if (withPast)
            {
                k4 = b.Op(a, "Concat", [pastKeys[i], k4], [Attr.Int("axis", 2)], output: $"present.{i}.key");
                v4 = b.Op(a, "Concat", [pastValues[i], v4], [Attr.Int("axis", 2)], output: $"present.{i}.value");
                presents.Add(k4);
                presents.Add(v4);
            }
            else if (presentsWithoutPast)
            {
                presents.Add(b.Op(a, "Identity", [k4], output: $"present.{i}.key"));
                presents.Add(b.Op(a, "Identity", [v4], output: $"present.{i}.value"));
            }
            if (c.QueriesPerKvHead > 1)
            {
                k4 = RepeatKv(b, a, k4, c);
                v4 = RepeatKv(b, a, v4, c);
            }
            var kT = b.Op(a, "Transpose", [k4], [GraphWriter.Perm(0, 1, 3, 2)]);
            var scores = b.Op(a, "MatMul", [q4, kT]);
            scores = b.Op(a, "Div", [scores, b.Const(a, GraphWriter.Scalar(dt, (float)Math.Sqrt(hs)))]);
            if (vr.AttentionSoftcap is float attnCap)
                scores = b.Op(a, "Mul", [b.Op(a, "Tanh", [b.Op(a, "Div", [scores, b.Const(a, GraphWriter.Scalar(dt, attnCap))])]), b.Const(a, GraphWriter.Scalar(dt, attnCap))]);
            scores = b.Op(a, "Add", [scores, slidingBias is not null && i % 2 == 0 ? slidingBias : attnBias]);
            var probs = b.Op(a, "Softmax", [scores], [Attr.Int("axis", -1)]);
            var context = b.Op(a, "MatMul", [probs, v4]);
            context = b.Op(a, "Transpose", [context], [GraphWriter.Perm(0, 2, 1, 3)]);
            context = b.Op(a, "Reshape", [context, b.Const(a, GraphWriter.I64(0, 0, D))]);
            if (vr.GatedOutput) context = b.Op(a, "Mul", [context, gate]);
            var o = b.Op($"{a}/o_proj", "MatMul", [context, b.Init($"{P}.self_attn.o_proj.weight", w.Get(WeightRole.O, i, [D, D], false))]);
            if (vr.BlockNorms != BlockNormLayout.Pre)
            {
                // Gemma 2/3: post_attention_layernorm on the attention output, pre_/post_feedforward_layernorm around the MLP;
                // OLMo 2 has only the two norms on the outputs.
                o = Norm($"{L}/post_attention_layernorm", o, $"{P}.post_attention_layernorm.weight", DecoderVariants.Extra($"{P}.post_attention_layernorm", [D], true, dt));
                hidden = b.Op(L, "Add", [hidden, o]);
                x = vr.BlockNorms == BlockNormLayout.PostOnly ? hidden
                    : Norm($"{L}/pre_feedforward_layernorm", hidden, $"{P}.pre_feedforward_layernorm.weight", w.Get(WeightRole.FfnNorm, i, [D], false));
                var mlp = SwiGlu(b, $"{L}/mlp", x, w, c, i, $"{P}.mlp.", ".weight");
                mlp = Norm($"{L}/post_feedforward_layernorm", mlp, $"{P}.post_feedforward_layernorm.weight", DecoderVariants.Extra($"{P}.post_feedforward_layernorm", [D], true, dt));
                hidden = b.Op(L, "Add", [hidden, mlp]);
                continue;
            }
            hidden = b.Op(L, "Add", [hidden, o]);

            x = Norm($"{L}/post_attention_layernorm", hidden, $"{P}.post_attention_layernorm.weight", w.Get(WeightRole.FfnNorm, i, [D], false));
            hidden = b.Op(L, "Add", [hidden, SwiGlu(b, $"{L}/mlp", x, w, c, i, $"{P}.mlp.", ".weight")]);
        }

        var final = RmsNorm(b, "/model/norm", hidden, b.Init("model.norm.weight", w.Get(WeightRole.FinalNorm, -1, [D], false)), c.NormEps, dt);
        var logits = vr.LogitSoftcap is float cap
            ? SoftCap(b, "/model/final_logit_softcapping", b.Op("/lm_head", "MatMul", [final, b.Init("lm_head.weight", w.Get(WeightRole.LmHead, -1, [D, V], false))]), cap, dt)
            : b.Op("/lm_head", "MatMul", [final, b.Init("lm_head.weight", w.Get(WeightRole.LmHead, -1, [D, V], false))], output: "logits");

        AddOutput(g, logits, dt, [batch, seq, new Dim(V)]);
        foreach (var p in presents) AddOutput(g, p, dt, [batch, new Dim(KV), total, new Dim(hs)]);
        var model = new Model(g, IrVersion);
        model.OpsetImports.Add(new OpsetId("", 14));
        return model;
    }

    /// <summary>sqrt(dim) rounded to 2 decimals (genai's builder for Gemma).</summary>
    private static float EmbedScale(long dim) => (float)Math.Round(Math.Sqrt(dim), 2);

    /// <summary>cap * tanh(x / cap) as the graph output "logits".</summary>
    private static Value SoftCap(GraphWriter b, string scope, Value x, float cap, TensorDataType dt)
    {
        var tanh = b.Op(scope, "Tanh", [b.Op(scope, "Div", [x, b.Const(scope, GraphWriter.Scalar(dt, cap))])]);
        return b.Op(scope, "Mul", [tanh, b.Const(scope, GraphWriter.Scalar(dt, cap))], output: "logits");
    }

    /// <summary>Pow(x, 2) -> ReduceMean(-1) -> Add(eps) -> Sqrt -> Div(1, .) -> Mul(x, .) -> Mul(gamma, .);
    /// for FLOAT16 the statistics run in float32 between Cast nodes.</summary>
    private static Value RmsNorm(GraphWriter b, string scope, Value x, Value gamma, float eps, TensorDataType dt)
    {
        bool cast = dt != TensorDataType.Float;
        var xf = cast ? b.Op(scope, "Cast", [x], [Attr.Int("to", (long)TensorDataType.Float)]) : x;
        var pow = b.Op(scope, "Pow", [xf, b.Const(scope, GraphWriter.F32Scalar(2f))]);
        var mean = b.Op(scope, "ReduceMean", [pow], [Attr.Ints("axes", -1), Attr.Int("keepdims", 1)]);
        var add = b.Op(scope, "Add", [mean, b.Const(scope, GraphWriter.F32Scalar(eps))]);
        var sqrt = b.Op(scope, "Sqrt", [add]);
        var inv = b.Op(scope, "Div", [b.Const(scope, GraphWriter.F32Scalar(1f)), sqrt]);
        var normed = b.Op(scope, "Mul", [xf, inv]);
        if (cast) normed = b.Op(scope, "Cast", [normed], [Attr.Int("to", (long)dt)]);
        return b.Op(scope, "Mul", [gamma, normed]);
    }

    /// <summary>[B, S, heads*hs] -> Reshape [B, S, heads, hs] -> Transpose [B, heads, S, hs].</summary>
    private static Value SplitHeads(GraphWriter b, string scope, Value x, long heads, long hs)
    {
        var reshaped = b.Op(scope, "Reshape", [x, b.Const(scope, GraphWriter.I64(0, 0, heads, hs))]);
        return b.Op(scope, "Transpose", [reshaped], [GraphWriter.Perm(0, 2, 1, 3)]);
    }

    /// <summary>x * cos + rotate_half(x) * sin, rotate_half(x) = Concat(-x[..., hs/2:], x[..., :hs/2]).</summary>
    private static Value RotateHalf(GraphWriter b, string scope, Value x, Value cos, Value sin, long hs)
    {
        var axes = b.Const(scope, GraphWriter.I64(-1));
        var x1 = b.Op(scope, "Slice", [x, b.Const(scope, GraphWriter.I64(0)), b.Const(scope, GraphWriter.I64(hs / 2)), axes]);
        var x2 = b.Op(scope, "Slice", [x, b.Const(scope, GraphWriter.I64(hs / 2)), b.Const(scope, GraphWriter.I64(hs)), axes]);
        var rotated = b.Op(scope, "Concat", [b.Op(scope, "Neg", [x2]), x1], [Attr.Int("axis", -1)]);
        return b.Op(scope, "Add", [b.Op(scope, "Mul", [x, cos]), b.Op(scope, "Mul", [rotated, sin])]);
    }

    /// <summary>[B, kvH, T, hs] -> Unsqueeze(2) -> Expand [B, kvH, rep, T, hs] -> Reshape [B, H, T, hs].</summary>
    private static Value RepeatKv(GraphWriter b, string scope, Value x, DecoderConfig c)
    {
        var unsqueezed = b.Op(scope, "Unsqueeze", [x, b.Const(scope, GraphWriter.I64(2))]);
        var expanded = b.Op(scope, "Expand", [unsqueezed, b.Const(scope, GraphWriter.I64(1, 1, c.QueriesPerKvHead, 1, 1))]);
        return b.Op(scope, "Reshape", [expanded, b.Const(scope, GraphWriter.I64(0, c.Heads, -1, c.HeadSize))]);
    }

    /// <summary>down(SiLU(gate(x)) * up(x)) with SiLU as Sigmoid and Mul (both flavours).</summary>
    private static Value SwiGlu(GraphWriter b, string scope, Value x, WeightSource w, DecoderConfig c, int layer, string prefix, string suffix)
    {
        long D = c.Dim, Hd = c.HiddenDim;
        var gate = b.Op($"{scope}/gate_proj", "MatMul", [x, b.Init($"{prefix}gate_proj{suffix}", w.Get(WeightRole.Gate, layer, [D, Hd], false))]);
        var up = b.Op($"{scope}/up_proj", "MatMul", [x, b.Init($"{prefix}up_proj{suffix}", w.Get(WeightRole.Up, layer, [D, Hd], false))]);
        var sigmoid = b.Op($"{scope}/act_fn", "Sigmoid", [gate]);
        var silu = b.Op($"{scope}/act_fn", "Mul", [gate, sigmoid]);
        var product = b.Op(scope, "Mul", [silu, up]);
        return b.Op($"{scope}/down_proj", "MatMul", [product, b.Init($"{prefix}down_proj{suffix}", w.Get(WeightRole.Down, layer, [Hd, D], false))]);
    }

    // ---- onnxruntime-genai builder-like (GroupQueryAttention) --------------------------------------

    private static Model GenAiGqa(DecoderConfig c, WeightSource w, GqaRotary rotary, DecoderVariants vr)
    {
        bool fused = rotary == GqaRotary.Fused || (rotary == GqaRotary.Auto && c.HeadSize % 16 == 0 && vr.QkNorm == QkNormStyle.None && !vr.GatedOutput);
        vr.Validate(LlamaOnnxFlavour.GenAiGqa, fused);
        if (fused && c.HeadSize % 16 != 0)
            throw new ArgumentException($"GroupQueryAttention's fused rotary needs head_size to be a multiple of 16 on ONNX Runtime (head_size is {c.HeadSize}); use GqaRotary.Separate or Auto", nameof(rotary));
        var dt = w.DataType;
        var g = new Graph("main_graph");
        var b = new GraphWriter(g, OutputNaming.GenAi);
        long D = c.Dim, KV = c.KvHeads, hs = c.HeadSize, V = c.VocabSize;
        var batch = Dim.Symbolic("batch_size");
        var seq = Dim.Symbolic("sequence_length");
        var past = Dim.Symbolic("past_sequence_length");
        var total = Dim.Symbolic("total_sequence_length");
        const string ms = "com.microsoft";

        var inputIds = b.Input("input_ids", TensorDataType.Int64, [batch, seq]);
        var mask = b.Input("attention_mask", TensorDataType.Int64, [batch, total]);
        var pastKeys = new Value[c.Layers];
        var pastValues = new Value[c.Layers];
        for (int i = 0; i < c.Layers; i++)
        {
            pastKeys[i] = b.Input($"past_key_values.{i}.key", dt, [batch, new Dim(KV), past, new Dim(hs)]);
            pastValues[i] = b.Input($"past_key_values.{i}.value", dt, [batch, new Dim(KV), past, new Dim(hs)]);
        }

        // seqlens_k = ReduceSum(attention_mask, 1) - 1 and total_sequence_length = Shape(attention_mask)[1], as int32.
        var one1D = Constant(b, "/model/constant_nodes/TensorProto.INT64/1D/1", "/model/constants/TensorProto.INT64/1D/1", GraphWriter.I64(1));
        const string sub = "/model/attn_mask_reformat/attn_mask_subgraph";
        var reduceSum = Node(b, "", "ReduceSum", $"{sub}/ReduceSum", [mask, one1D]);
        var seqlensK = Node(b, "", "Cast", $"{sub}/Sub/Cast", [Node(b, "", "Sub", $"{sub}/Sub", [reduceSum, one1D])], Attr.Int("to", (long)TensorDataType.Int32));
        var shape = Node(b, "", "Shape", $"{sub}/Shape", [mask]);
        var one0D = Constant(b, "/model/constant_nodes/TensorProto.INT64/0D/1", "/model/constants/TensorProto.INT64/0D/1", GraphWriter.I64Scalar(1));
        var totalLen = Node(b, "", "Cast", $"{sub}/Gather/Cast", [Node(b, "", "Gather", $"{sub}/Gather", [shape, one0D], Attr.Int("axis", 0))], Attr.Int("to", (long)TensorDataType.Int32));

        // Separate rotary: position ids [B, S] = ReduceSum(attention_mask) - S + Range(0, S), the positions
        // GroupQueryAttention's own rotary uses (seqlens_k + 1 - S + s).
        Value? positionIds = null;
        if (!fused)
        {
            const string pos = "/model/pos_ids_reformat";
            var idsShape = Node(b, "", "Shape", $"{pos}/Shape", [inputIds]);
            var seqLen = Node(b, "", "Gather", $"{pos}/Gather", [idsShape, one0D], Attr.Int("axis", 0));
            var zero = Constant(b, "/model/constant_nodes/TensorProto.INT64/0D/0", "/model/constants/TensorProto.INT64/0D/0", GraphWriter.I64Scalar(0));
            var range = Node(b, "", "Range", $"{pos}/Range", [zero, seqLen, one0D]);
            var start = Node(b, "", "Sub", $"{pos}/Sub", [reduceSum, seqLen]);
            positionIds = Node(b, "", "Add", $"{pos}/Add", [start, range]);
        }

        var embedTable = b.Init("model.embed_tokens.weight", w.Get(WeightRole.Embedding, -1, [V, D], false));
        var residual = Node(b, "", "Gather", "/model/embed_tokens/Gather", [embedTable, inputIds]);
        if (vr.EmbeddingScale)
            residual = Node(b, "", "Mul", "/model/embed_tokens/Mul", [residual, b.Init("/model/embed_tokens/scale", GraphWriter.Scalar(dt, EmbedScale(D)))]);

        var (cosTable, sinTable) = Rope.Tables(c, c.MaxSeqLen);
        Value? cosCache = null, sinCache = null;
        var eps = Attr.Float("epsilon", c.NormEps);
        Value? pendingSkip = null; // the previous layer's down_proj output, added to the residual by the next norm
        var presents = new List<Value>();
        for (int i = 0; i < c.Layers; i++)
        {
            string L = $"/model/layers.{i}";
            string P = $"model.layers.{i}";
            Value? gateSigmoid = null;
            var inputGamma = b.Init($"{P}.input_layernorm.weight", w.Get(WeightRole.AttentionNorm, i, [D], false));
            Value x;
            if (pendingSkip is null)
            {
                x = b.Node("", "SimplifiedLayerNormalization", $"{L}/input_layernorm/LayerNorm", [residual, inputGamma], [$"{L}/input_layernorm/output_0"],
                    eps, Attr.Int("axis", -1), Attr.Int("stash_type", 1)).Outputs[0]!;
            }
            else
            {
                var n = b.Node(ms, "SkipSimplifiedLayerNormalization", $"{L}/input_layernorm/SkipLayerNorm", [residual, pendingSkip, inputGamma],
                    [$"{L}/input_layernorm/output_0", null, null, $"{L}/input_layernorm/output_3"], eps);
                x = n.Outputs[0]!;
                residual = n.Outputs[3]!;
            }

            var gqaAttributes = new[]
            {
                Attr.Int("num_heads", c.Heads), Attr.Int("kv_num_heads", c.KvHeads), Attr.Float("scale", (float)(1.0 / Math.Sqrt(hs))),
                Attr.Float("softcap", vr.AttentionSoftcap ?? 0f), Attr.Int("do_rotary", fused ? 1 : 0),
                Attr.Int("local_window_size", vr.SlidingWindow is int window && i % 2 == 0 ? window : -1),
                Attr.Int("rotary_interleaved", fused && c.RopeLayout == RopeLayout.InterleavedPairs ? 1 : 0),
            };
            Value?[] gqaInputs;
            if (fused)
            {
                var qkv = Node(b, "", "MatMul", $"{L}/attn/qkv_proj/MatMul", [x, b.Init($"{P}.attn.qkv_proj.MatMul.weight", w.Get(WeightRole.Qkv, i, [D, D + 2 * c.KvDim], false))]);
                cosCache ??= b.Init("cos_cache", DecoderWeightSource.ToTensor(cosTable, [c.MaxSeqLen, hs / 2], dt));
                sinCache ??= b.Init("sin_cache", DecoderWeightSource.ToTensor(sinTable, [c.MaxSeqLen, hs / 2], dt));
                gqaInputs = [qkv, null, null, pastKeys[i], pastValues[i], seqlensK, totalLen, cosCache, sinCache];
            }
            else
            {
                Value q;
                if (vr.GatedOutput)
                {
                    // The onnx-community Qwen3.5 form: Reshape [0, 0, H, 2hs] -> Split -> Reshape [0, 0, D] (query, gate) -> Sigmoid(gate).
                    var packed = DecoderVariants.PackQueryGate(w.Get(WeightRole.Q, i, [D, D], false), DecoderVariants.Extra($"{P}.gate", [D, D], false, dt), c.Heads, hs, dt);
                    var qg = Node(b, "", "MatMul", $"{L}/attn/q_proj/MatMul", [x, b.Init($"{P}.attn.q_proj.MatMul.weight", packed)]);
                    var pre = Node(b, "", "Reshape", $"{L}/attn/q_proj/Reshape_PreSplit", [qg, b.Init($"{P}.attn.q_proj.presplit_shape", GraphWriter.I64(0, 0, c.Heads, 2 * hs))]);
                    var split = b.Node("", "Split", $"{L}/attn/q_proj/Split", [pre, b.Init($"{P}.attn.q_proj.split", GraphWriter.I64(hs, hs))],
                        [b.OutputName($"{L}/attn/q_proj/Split"), b.OutputName($"{L}/attn/q_proj/Split", 1)], [Attr.Int("axis", -1)]);
                    var flat = b.Init($"{P}.attn.q_proj.flat_shape", GraphWriter.I64(0, 0, D));
                    q = Node(b, "", "Reshape", $"{L}/attn/q_proj/Reshape_Query", [split.Outputs[0], flat]);
                    gateSigmoid = Node(b, "", "Sigmoid", $"{L}/attn/q_proj/GateSigmoid", [Node(b, "", "Reshape", $"{L}/attn/q_proj/Reshape_Gate", [split.Outputs[1], flat])]);
                }
                else q = Node(b, "", "MatMul", $"{L}/attn/q_proj/MatMul", [x, b.Init($"{P}.attn.q_proj.MatMul.weight", w.Get(WeightRole.Q, i, [D, D], false))]);
                var k = Node(b, "", "MatMul", $"{L}/attn/k_proj/MatMul", [x, b.Init($"{P}.attn.k_proj.MatMul.weight", w.Get(WeightRole.K, i, [D, c.KvDim], false))]);
                Value QkNorm(string which, Value t, long width)
                {
                    string scope = $"{L}/attn/{which}_norm";
                    string gain = $"{P}.attn.{which}_norm.layernorm.weight";
                    switch (vr.QkNorm)
                    {
                        case QkNormStyle.PerHead:
                            var heads = Node(b, "", "Reshape", $"{scope}/Reshape_1", [t, b.Init($"{scope}/head_shape", GraphWriter.I64(0, -1, hs))]);
                            var normed = b.Node("", "SimplifiedLayerNormalization", $"{scope}/SimplifiedLayerNormalization", [heads, b.Init(gain, DecoderVariants.Extra(gain, [hs], true, dt))],
                                [b.OutputName($"{scope}/SimplifiedLayerNormalization")], [eps, Attr.Int("axis", -1), Attr.Int("stash_type", 1)]).Outputs[0]!;
                            return Node(b, "", "Reshape", $"{scope}/Reshape_2", [normed, b.Init($"{scope}/flat_shape", GraphWriter.I64(0, -1, width))]);
                        case QkNormStyle.FullWidth:
                            return b.Node("", "SimplifiedLayerNormalization", $"{scope}/SimplifiedLayerNormalization", [t, b.Init(gain, DecoderVariants.Extra(gain, [width], true, dt))],
                                [b.OutputName($"{scope}/SimplifiedLayerNormalization")], [eps, Attr.Int("axis", -1), Attr.Int("stash_type", 1)]).Outputs[0]!;
                        default:
                            return t;
                    }
                }
                q = QkNorm("q", q, D);
                k = QkNorm("k", k, c.KvDim);
                var v = Node(b, "", "MatMul", $"{L}/attn/v_proj/MatMul", [x, b.Init($"{P}.attn.v_proj.MatMul.weight", w.Get(WeightRole.V, i, [D, c.KvDim], false))]);
                cosCache ??= b.Init("cos_cache", DecoderWeightSource.ToTensor(cosTable, [c.MaxSeqLen, hs / 2], dt));
                sinCache ??= b.Init("sin_cache", DecoderWeightSource.ToTensor(sinTable, [c.MaxSeqLen, hs / 2], dt));
                var rotaryAttributes = new[] { Attr.Int("interleaved", c.RopeLayout == RopeLayout.InterleavedPairs ? 1 : 0), Attr.Int("num_heads", 0), Attr.Int("rotary_embedding_dim", 0) };
                var qRot = Node(b, ms, "RotaryEmbedding", $"{L}/attn/q_rotary/RotaryEmbedding", [q, positionIds, cosCache, sinCache], rotaryAttributes);
                var kRot = Node(b, ms, "RotaryEmbedding", $"{L}/attn/k_rotary/RotaryEmbedding", [k, positionIds, cosCache, sinCache], rotaryAttributes);
                gqaInputs = [qRot, kRot, v, pastKeys[i], pastValues[i], seqlensK, totalLen];
            }
            var gqa = b.Node(ms, "GroupQueryAttention", $"{L}/attn/GroupQueryAttention", gqaInputs,
                [$"{L}/attn/GroupQueryAttention/output_0", $"present.{i}.key", $"present.{i}.value"], gqaAttributes);
            presents.Add(gqa.Outputs[1]!);
            presents.Add(gqa.Outputs[2]!);
            var attnOut = gateSigmoid is null ? gqa.Outputs[0] : Node(b, "", "Mul", $"{L}/attn/GateMul", [gqa.Outputs[0], gateSigmoid]);
            var o = Node(b, "", "MatMul", $"{L}/attn/o_proj/MatMul", [attnOut, b.Init($"{P}.attn.o_proj.MatMul.weight", w.Get(WeightRole.O, i, [D, D], false))]);

            if (vr.BlockNorms == BlockNormLayout.Sandwich)
            {
                // genai's Gemma 2/3 layer: post_attention_layernorm (plain) on o_proj, pre_feedforward_layernorm as the skip norm,
                // post_feedforward_layernorm (plain) on down_proj; the next layer's input_layernorm adds it to the residual.
                Value Plain(string name, Value input, Tensor gamma) => b.Node("", "SimplifiedLayerNormalization", $"{L}/{name}/LayerNorm", [input, b.Init($"{P}.{name}.weight", gamma)],
                    [$"{L}/{name}/output_0"], [eps, Attr.Int("axis", -1), Attr.Int("stash_type", 1)]).Outputs[0]!;
                var postAttention = Plain("post_attention_layernorm", o, DecoderVariants.Extra($"{P}.post_attention_layernorm", [D], true, dt));
                var preFfn = b.Node(ms, "SkipSimplifiedLayerNormalization", $"{L}/pre_feedforward_layernorm/SkipLayerNorm",
                    [residual, postAttention, b.Init($"{P}.pre_feedforward_layernorm.weight", w.Get(WeightRole.FfnNorm, i, [D], false))],
                    [$"{L}/pre_feedforward_layernorm/output_0", null, null, $"{L}/pre_feedforward_layernorm/output_3"], [eps]);
                residual = preFfn.Outputs[3]!;
                var mlp = GenAiMlp(b, $"{L}/mlp", preFfn.Outputs[0]!, w, c, i, $"{P}.mlp.");
                pendingSkip = Plain("post_feedforward_layernorm", mlp, DecoderVariants.Extra($"{P}.post_feedforward_layernorm", [D], true, dt));
                continue;
            }
            var post = b.Node(ms, "SkipSimplifiedLayerNormalization", $"{L}/post_attention_layernorm/SkipLayerNorm",
                [residual, o, b.Init($"{P}.post_attention_layernorm.weight", w.Get(WeightRole.FfnNorm, i, [D], false))],
                [$"{L}/post_attention_layernorm/output_0", null, null, $"{L}/post_attention_layernorm/output_3"], eps);
            residual = post.Outputs[3]!;
            pendingSkip = GenAiMlp(b, $"{L}/mlp", post.Outputs[0]!, w, c, i, $"{P}.mlp.");
        }

        // The builder's final norm is a SkipSimplifiedLayerNormalization too (residual + last down_proj).
        string F = $"/model/layers.{c.Layers}/final_norm_layernorm";
        var finalNorm = b.Node(ms, "SkipSimplifiedLayerNormalization", $"{F}/SkipLayerNorm",
            [residual, pendingSkip, b.Init($"model.layers.{c.Layers}.final_norm_layernorm.weight", w.Get(WeightRole.FinalNorm, -1, [D], false))],
            [$"{F}/output_0"], eps);
        var logits = b.Node("", "MatMul", "/lm_head/MatMul", [finalNorm.Outputs[0], b.Init("lm_head.MatMul.weight", w.Get(WeightRole.LmHead, -1, [D, V], false))],
            [vr.LogitSoftcap is null ? "logits" : "/lm_head/MatMul/output_0"]).Outputs[0]!;
        if (vr.LogitSoftcap is float cap) logits = SoftCap(b, "/lm_head/softcap", logits, cap, dt);

        AddOutput(g, logits, dt, [batch, seq, new Dim(V)]);
        foreach (var p in presents) AddOutput(g, p, dt, [batch, new Dim(KV), total, new Dim(hs)]);
        var model = new Model(g, IrVersion);
        model.OpsetImports.Add(new OpsetId("", 14));
        model.OpsetImports.Add(new OpsetId(ms, 1));
        return model;
    }

    private static Value GenAiMlp(GraphWriter b, string scope, Value x, WeightSource w, DecoderConfig c, int layer, string prefix)
    {
        long D = c.Dim, Hd = c.HiddenDim;
        var gate = Node(b, "", "MatMul", $"{scope}/gate_proj/MatMul", [x, b.Init($"{prefix}gate_proj.MatMul.weight", w.Get(WeightRole.Gate, layer, [D, Hd], false))]);
        var up = Node(b, "", "MatMul", $"{scope}/up_proj/MatMul", [x, b.Init($"{prefix}up_proj.MatMul.weight", w.Get(WeightRole.Up, layer, [D, Hd], false))]);
        var sigmoid = Node(b, "", "Sigmoid", $"{scope}/act_fn/Sigmoid", [gate]);
        var silu = Node(b, "", "Mul", $"{scope}/act_fn/Mul", [gate, sigmoid]);
        var product = Node(b, "", "Mul", $"{scope}/Mul", [silu, up]);
        return Node(b, "", "MatMul", $"{scope}/down_proj/MatMul", [product, b.Init($"{prefix}down_proj.MatMul.weight", w.Get(WeightRole.Down, layer, [Hd, D], false))]);
    }

    /// <summary>A one-output node named <paramref name="name"/> with output "{name}/output_0" (genai naming).</summary>
    private static Value Node(GraphWriter b, string domain, string opType, string name, Value?[] inputs, params Attr[] attributes) =>
        b.Node(domain, opType, name, inputs, null, attributes).Outputs[0]!;

    private static Value Constant(GraphWriter b, string nodeName, string outputName, Tensor value) =>
        b.Editor.Constant(value, nodeName, outputName);

    private static void AddOutput(Graph g, Value value, TensorDataType type, Dim[] shape)
    {
        g.AddOutput(value);
        value.SetTensorType(type, shape);
    }
}
