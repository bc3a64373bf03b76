using OnnxOutlierTools.Import.Onnx;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Import;

/// <summary>Where a QK-norm sits (Qwen3 / Gemma 3 / Qwen3.5 per head, OLMo 2 over the whole projection).</summary>
public enum QkNormStyle { None, PerHead, FullWidth }

/// <summary>Which norms a block has around its two sublayers.</summary>
public enum BlockNormLayout
{
    /// <summary>Llama: input_layernorm before attention, post_attention_layernorm before the MLP.</summary>
    Pre,
    /// <summary>Gemma 2/3: input_layernorm, post_attention_layernorm (on the attention output, before the residual add),
    /// pre_feedforward_layernorm, post_feedforward_layernorm (on the MLP output).</summary>
    Sandwich,
    /// <summary>OLMo 2: only the norms on the sublayer outputs (post_attention_layernorm, post_feedforward_layernorm);
    /// attention and MLP read the residual stream itself.</summary>
    PostOnly,
}

/// <summary>How the norms multiply by their gain initializer.</summary>
public enum NormGainStyle
{
    /// <summary>Mul by the initializer (also what genai's builder writes for Gemma: the 1 pre-added).</summary>
    Plain,
    /// <summary>Mul by Add(initializer, 1), Gemma's RMSNorm as torch exports it without constant folding.</summary>
    OnePlus,
}

/// <summary>
/// Architecture variants of newer models, on top of the Llama graph <see cref="LlamaOnnxBuilder"/> writes, in the shape
/// their exporters give them (for recognition tests; the extra weights are seeded, so a variant model computes a
/// valid but different function than the llama2.c reference). Supported by <see cref="LlamaOnnxFlavour.Decomposed"/>,
/// <see cref="LlamaOnnxFlavour.DecomposedWithPast"/> and <see cref="LlamaOnnxFlavour.GenAiGqa"/> with
/// <see cref="GqaRotary.Separate"/> (q/k/v are separate projections there).
/// </summary>
public sealed record DecoderVariants
{
    /// <summary>RMSNorm on q and k before RoPE. Decomposed: Reshape [B, S, H, hs] -> decomposed RMSNorm (gain [hs]) -> Transpose;
    /// GenAi: Reshape [0, -1, hs] -> SimplifiedLayerNormalization -> Reshape back (the onnx-community Qwen3.5 form).</summary>
    public QkNormStyle QkNorm { get; init; } = QkNormStyle.None;

    /// <summary>Gemma 2/3 sandwich norms or OLMo 2's output-only norms instead of Llama's pre-norms.</summary>
    public BlockNormLayout BlockNorms { get; init; } = BlockNormLayout.Pre;

    /// <summary><see cref="NormGainStyle.OnePlus"/> writes Add(gamma, 1) before every block norm's Mul (decomposed flavours only).</summary>
    public NormGainStyle GainStyle { get; init; } = NormGainStyle.Plain;

    /// <summary>Multiply the token embedding by sqrt(dim) (rounded to 2 decimals, as genai's builder does).</summary>
    public bool EmbeddingScale { get; init; }

    /// <summary>Logit soft-capping cap * tanh(logits / cap) after the LM head (Gemma 2: 30).</summary>
    public float? LogitSoftcap { get; init; }

    /// <summary>Attention-logit soft-capping (Gemma 2: 50): GroupQueryAttention's softcap attribute, or Div/Tanh/Mul before the mask.</summary>
    public float? AttentionSoftcap { get; init; }

    /// <summary>Qwen3.5 gated output: q_proj emits query and gate per head ([D, 2D], per head hs query columns then hs gate
    /// columns), split after a Reshape; o_proj reads attn * Sigmoid(gate).</summary>
    public bool GatedOutput { get; init; }

    /// <summary>Sliding-window attention of this many keys on even layers (odd layers global, Gemma 2's alternation):
    /// GroupQueryAttention's local_window_size, or in decomposed graphs a second mask kv > q - window.</summary>
    public int? SlidingWindow { get; init; }

    /// <summary>Take <c>inputs_embeds</c> [B, S, D] instead of <c>input_ids</c> (no token embedding in the graph: Qwen3.5's and
    /// Qwen3-TTS's split exports); <see cref="SplitEmbedding"/> builds the embedding model that feeds it. Decomposed flavours only.</summary>
    public bool InputsEmbeds { get; init; }

    public bool Any => QkNorm != QkNormStyle.None || BlockNorms != BlockNormLayout.Pre || GainStyle != NormGainStyle.Plain || EmbeddingScale
        || LogitSoftcap is not null || AttentionSoftcap is not null || GatedOutput || SlidingWindow is not null || InputsEmbeds;

    internal void Validate(LlamaOnnxFlavour flavour, bool fusedRotary)
    {
        if (!Enum.IsDefined(QkNorm)) throw new ArgumentException($"unknown QK-norm style {QkNorm}", nameof(QkNorm));
        if (!Enum.IsDefined(GainStyle)) throw new ArgumentException($"unknown gain style {GainStyle}", nameof(GainStyle));
        if (!Enum.IsDefined(BlockNorms)) throw new ArgumentException($"unknown block norm layout {BlockNorms}", nameof(BlockNorms));
        if (flavour == LlamaOnnxFlavour.GenAiGqa && InputsEmbeds)
            throw new ArgumentException("inputs_embeds decoders are written by the decomposed flavours only");
        if (flavour == LlamaOnnxFlavour.GenAiGqa && BlockNorms == BlockNormLayout.PostOnly)
            throw new ArgumentException("output-only block norms (OLMo 2) are written by the decomposed flavours only");
        if (LogitSoftcap is <= 0 || AttentionSoftcap is <= 0) throw new ArgumentException("a soft-cap must be positive");
        if (SlidingWindow is <= 0) throw new ArgumentException($"the sliding window must be positive, got {SlidingWindow}", nameof(SlidingWindow));
        if (flavour == LlamaOnnxFlavour.GenAiGqa && fusedRotary && (QkNorm != QkNormStyle.None || GatedOutput))
            throw new ArgumentException("QK-norm and gated output need separate q/k/v projections: use GqaRotary.Separate");
        if (flavour == LlamaOnnxFlavour.GenAiGqa && GainStyle != NormGainStyle.Plain)
            throw new ArgumentException("the genai flavour writes plain gains (its builder pre-adds Gemma's 1); use a decomposed flavour for explicit (1 + gamma)");
    }

    /// <summary>Seeded extra weights (norm gains near 1, projections ~ N(0, 1/in)), stable across runs.</summary>
    internal static Tensor Extra(string name, long[] dims, bool gain, TensorDataType type)
    {
        long count = dims.Aggregate(1L, (a, d) => a * d);
        var rng = new Random(StableHash(name));
        var data = new float[count];
        double std = gain ? 0.1 : 1.0 / Math.Sqrt(dims[0]);
        for (long i = 0; i < count; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            data[i] = (float)((gain ? 1.0 : 0.0) + std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return DecoderWeightSource.ToTensor(data, dims, type);
    }

    /// <summary>[D, H*hs] query weights and [D, H*hs] gate weights interleaved per head into [D, 2*H*hs].</summary>
    internal static Tensor PackQueryGate(Tensor query, Tensor gate, long heads, long headSize, TensorDataType type)
    {
        float[] q = Floats(query), g = Floats(gate);
        long rows = query.Dims[0], width = heads * headSize;
        var packed = new float[rows * 2 * width];
        for (long r = 0; r < rows; r++)
            for (long h = 0; h < heads; h++)
                for (long j = 0; j < headSize; j++)
                {
                    packed[r * 2 * width + h * 2 * headSize + j] = q[r * width + h * headSize + j];
                    packed[r * 2 * width + h * 2 * headSize + headSize + j] = g[r * width + h * headSize + j];
                }
        return DecoderWeightSource.ToTensor(packed, [rows, 2 * width], type);
    }

    private static float[] Floats(Tensor t) => t.DataType switch
    {
        TensorDataType.Float => t.AsSpan<float>().ToArray(),
        TensorDataType.Float16 => t.AsSpan<Half>().ToArray().Select(h => (float)h).ToArray(),
        _ => throw new NotSupportedException(t.DataType.OnnxName()),
    };

    private static int StableHash(string s)
    {
        uint h = 2166136261;
        foreach (char c in s) h = (h ^ c) * 16777619;
        return (int)(h & 0x7FFFFFFF);
    }
}
