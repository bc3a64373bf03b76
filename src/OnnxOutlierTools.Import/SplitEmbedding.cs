using OnnxOutlierTools.Import.Onnx;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Import;

/// <summary>A decoder split across two files, as Qwen3.5's and Qwen3-TTS's exports are: an embedding model
/// (<c>input_ids</c> -> Gather of the token table -> <c>inputs_embeds</c>) and the decoder taking <c>inputs_embeds</c>
/// (<see cref="DecoderVariants.InputsEmbeds"/>). Feeding the first's output to the second gives the unsplit decoder's logits.</summary>
public static class SplitEmbedding
{
    public const string OutputName = "inputs_embeds";

    /// <summary>The embedding model of <paramref name="weights"/>: <c>input_ids</c> [B, S] int64 -> <c>inputs_embeds</c> [B, S, D].</summary>
    public static Model BuildEmbeddingModel(DecoderWeights weights, TensorDataType weightType = TensorDataType.Float)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var c = weights.Config;
        var g = new Graph("embed_tokens");
        var b = new GraphWriter(g, OutputNaming.Torch);
        var batch = Dim.Symbolic("batch_size");
        var seq = Dim.Symbolic("sequence_length");
        var ids = b.Input("input_ids", TensorDataType.Int64, [batch, seq]);
        var table = b.Init("model.embed_tokens.weight",
            new DecoderWeightSource(weights, weightType).Get(WeightRole.Embedding, -1, [c.VocabSize, c.Dim], false));
        var embeds = b.Op("/model/embed_tokens", "Gather", [table, ids], output: OutputName);
        g.AddOutput(embeds);
        embeds.SetTensorType(weightType, [batch, seq, new Dim(c.Dim)]);
        var model = new Model(g, 8) { ProducerName = LlamaOnnxBuilder.ProducerName, ProducerVersion = "1" };
        model.OpsetImports.Add(new OpsetId("", 14));
        model.Metadata.Add(new("onnx_outlier_tools.flavour", "EmbeddingModel"));
        return model;
    }

    /// <summary>The embedding model and the decoder that reads its output (a decomposed flavour with <c>inputs_embeds</c>).</summary>
    public static (Model Embedding, Model Decoder) Build(DecoderWeights weights, LlamaOnnxOptions? options = null)
    {
        options ??= new LlamaOnnxOptions();
        var decoder = LlamaOnnxBuilder.Build(weights, options with { Variants = options.Variants with { InputsEmbeds = true } });
        return (BuildEmbeddingModel(weights, options.WeightType), decoder);
    }
}
