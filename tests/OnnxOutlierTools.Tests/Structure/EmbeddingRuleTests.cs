using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>The embedding rules on every fixture that has an embedding, and each variant on a tiny graph,
/// positive and negative (with the near miss --explain shows).</summary>
public class EmbeddingRuleTests
{
    public sealed record Expect(string File, EmbeddingForm Form, string TokenTable, string? PositionTable, string? TokenTypeTable, string Output);

    public static TheoryData<Expect> Cases => new()
    {
        new("exports/bert-toy-torch/bert_toy_optimized.onnx", EmbeddingForm.GatherWithPositions, "bert.embeddings.word_embeddings.weight",
            "bert.embeddings.position_embeddings.weight", "bert.embeddings.token_type_embeddings.weight", "111"),
        new("exports/distilbert-optimum/model.onnx", EmbeddingForm.GatherWithPositions, "distilbert.embeddings.word_embeddings.weight",
            "distilbert.embeddings.position_embeddings.weight", null, "55"),
        new("exports/gpt2-ort-beamsearch/tiny_gpt2_beamsearch.onnx", EmbeddingForm.EmbedLayerNormalization, "transformer.wte.weight", "transformer.wpe.weight", null,
            "EmbedLayerNormalization_0_output"),
        new("exports/gpt2-ort-fused-fp16/past.onnx", EmbeddingForm.EmbedLayerNormalization, "transformer.wte.weight", "transformer.wpe.weight", null, "EmbedLayerNormalization_0_output"),
        new("exports/gpt2-ort-fused-fp32/past.onnx", EmbeddingForm.EmbedLayerNormalization, "transformer.wte.weight", "transformer.wpe.weight", null, "EmbedLayerNormalization_0_output"),
        new("exports/gpt2-torch-nopast/GPT2Model.onnx", EmbeddingForm.GatherWithPositions, "wte.weight_resize", "wpe.weight_resize", null, "186"),
        // Token ids reach this Gather through Reshape(Slice(input_ids)), positions through Range: found since #6.
        new("exports/gpt2-torch-past/gpt2_past.onnx", EmbeddingForm.GatherWithPositions, "wte.weight_resize", "wpe.weight_resize", null, "223"),
        new("exports/llama-genai-gqa-fp32/model.onnx", EmbeddingForm.Gather, "model.embed_tokens.weight", null, null, "/model/embed_tokens/Gather/output_0"),
        new("exports/llama-genai-mha-fp16/model.onnx", EmbeddingForm.Gather, "model.embed_tokens.weight", null, null, "/model/embed_tokens/Gather/output_0"),
        new("exports/llama-mobius-opset24/model.onnx", EmbeddingForm.Gather, "model.embed_tokens.weight", null, null, "v_model.embed_tokens.Gather_0"),
        new("exports/llama-torch-nopast/model.onnx", EmbeddingForm.Gather, "model.embed_tokens.weight", null, null, "/model/embed_tokens/Gather_output_0"),
        new("exports/llama-torch-past/model.onnx", EmbeddingForm.Gather, "model.embed_tokens.weight", null, null, "/model/embed_tokens/Gather_output_0"),
        new("exports-modern/llama-tensorscatter-mobius/model.onnx", EmbeddingForm.Gather, "model.embed_tokens.weight", null, null, "v_model.embed_tokens.Gather_0"),
        new("exports-modern/phi35-mini-2layer-torchexport/model_microsoft_Phi-3_5-mini-instruct-custom-default-d1rt1.onnx", EmbeddingForm.Gather,
            "model.embed_tokens.weight", null, null, "embedding"),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Recognize_Fixture_FindsTheEmbedding(Expect e)
    {
        using var model = ModelReader.Load(Fixtures.Path(e.File.Split('/')), new LoadOptions { RequireExternalData = false });
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message);
        var embedding = result.Structure!.Embedding;
        Assert.True(embedding is not null, StructureReport.ToText(result, explain: true));
        Assert.Equal((e.Form, e.TokenTable, e.PositionTable, e.TokenTypeTable, e.Output),
            (embedding.Form, embedding.TokenTable.Name, embedding.PositionTable?.Name, embedding.TokenTypeTable?.Name, embedding.Output.Name));
        Assert.Same(result.Structure.Inputs.InputIds, embedding.TokenIds);
        Assert.True(embedding.TokenIds is { IsGraphInput: true }, $"token ids {embedding.TokenIds} are a graph input");
    }

    [Fact]
    public void InspectLayersExplain_Gpt2TorchPast_ReportsTheEmbeddingRuleThatMatched()
    {
        var r = CliRunner.Run("inspect", Fixtures.Export("gpt2-torch-past", "gpt2_past.onnx"), "--layers", "--explain");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("  embedding     Gather+positions: wte.weight_resize + positions wpe.weight_resize -> 223", r.Stdout);
        Assert.Contains("[embedding] Embedding/Gather+table: 1 match(es)", r.Stdout);
        Assert.Contains("note: took Gather+positions at '223' (token table 'wte.weight_resize')", r.Stdout);
    }

    private static (GraphBuilder B, Value Ids, Value Wte) Start()
    {
        var b = new GraphBuilder();
        var ids = b.Input("input_ids", TensorDataType.Int64, "batch", "seq");
        var wte = b.Initializer("wte", new float[40], 10, 4);
        return (b, ids, wte);
    }

    private static (EmbeddingRole? Role, Matcher Matcher) Find(GraphBuilder b)
    {
        var matcher = new Matcher(b.Graph);
        var role = EmbeddingRules.Find(matcher, EmbeddingRules.Create(EmbeddingRules.TokenIds(b.Graph)), out _);
        return (role, matcher);
    }

    [Fact]
    public void Gather_PositionsAndTokenTypesAddedInAnyOrder_AreToldApart()
    {
        var (b, ids, wte) = Start();
        var types = b.Input("token_type_ids", TensorDataType.Int64, "batch", "seq");
        var positions = b.Input("position_ids", TensorDataType.Int64, "batch", "seq");
        var pe = b.Op("Gather", b.Initializer("wpe", new float[32], 8, 4), positions);
        var te = b.Op("Gather", b.Initializer("wtt", new float[8], 2, 4), types);
        var tok = b.Op("Gather", wte, ids);
        var sum = b.Op("Add", te, b.Op("Add", pe, tok));
        var (role, _) = Find(b);
        Assert.NotNull(role);
        Assert.Equal((EmbeddingForm.GatherWithPositions, "wte", "wpe", "wtt"), (role.Form, role.TokenTable.Name, role.PositionTable?.Name, role.TokenTypeTable?.Name));
        Assert.Same(sum, role.Output);
        Assert.Same(ids, role.TokenIds);
        Assert.Equal(5, role.Nodes.Count);
    }

    [Fact]
    public void Gather_IdsThroughSliceAndReshape_PositionsFromRange_IsGpt2PastsEmbedding()
    {
        var (b, ids, wte) = Start();
        var sliced = b.Op("Slice", ids, b.Initializer("starts", new long[] { 0 }), b.Initializer("ends", new long[] { long.MaxValue }));
        var tok = b.Op("Gather", wte, b.Op("Reshape", sliced, b.Initializer("shape", new long[] { -1, 1 })));
        var range = b.Op("Range", b.Scalar("start", 0L), b.Scalar("limit", 1L), b.Scalar("delta", 1L));
        var pe = b.Op("Gather", b.Initializer("wpe", new float[32], 8, 4), b.Op("Unsqueeze", range, b.Initializer("axes", new long[] { 0 })));
        var sum = b.Op("Add", tok, pe);
        var (role, matcher) = Find(b);
        Assert.NotNull(role);
        Assert.Equal((EmbeddingForm.GatherWithPositions, "wpe"), (role.Form, role.PositionTable?.Name));
        Assert.Same(sum, role.Output);
        Assert.Same(ids, role.TokenIds);
        Assert.Equal(1, matcher.MatchCounts["Embedding/Gather+table"]);
    }

    [Fact]
    public void Gather_OfComputedIndices_IsNoEmbedding_AndTheNearMissSaysWhy()
    {
        var (b, ids, wte) = Start();
        // Indices computed from the ids (an ArgMax), not the ids themselves: a lookup, but not the embedding.
        var computed = b.Node("ArgMax", [b.Op("Cast", ids)], [Attr.Int("axis", 1)])[0];
        b.Op("Gather", wte, computed);
        var (role, matcher) = Find(b);
        Assert.Null(role);
        var miss = matcher.NearMisses["Embedding/Gather"];
        Assert.Contains("'ids'", miss.Reason);
        Assert.Contains("token ids", miss.Reason);
        Assert.Same(computed, miss.At);
    }

    [Fact]
    public void Gather_AddedLookupOfTheTokenTable_IsNotAPositionTable()
    {
        var (b, ids, wte) = Start();
        var other = b.Input("other_ids", TensorDataType.Int64, "batch", "seq");
        b.Op("Add", b.Op("Gather", wte, ids), b.Op("Gather", wte, other));
        var (role, matcher) = Find(b);
        Assert.NotNull(role);
        Assert.Equal(EmbeddingForm.Gather, role.Form);
        Assert.Contains("reads the token table 'wte' again", matcher.NearMisses["Embedding/Gather+table"].Reason);
    }

    [Fact]
    public void EmbedLayerNormalization_GivesWordPositionAndSegmentTables()
    {
        var (b, ids, wte) = Start();
        var segments = b.Input("segment_ids", TensorDataType.Int32, "batch", "seq");
        var wpe = b.Initializer("wpe", new float[32], 8, 4);
        var wse = b.Initializer("wse", new float[8], 2, 4);
        var gamma = b.Initializer("gamma", new float[4]);
        var beta = b.Initializer("beta", new float[4]);
        var outputs = b.Node("EmbedLayerNormalization", [b.Op("Cast", ids), segments, wte, wpe, wse, gamma, beta], domain: "com.microsoft", outputs: 2);
        var (role, _) = Find(b);
        Assert.NotNull(role);
        Assert.Equal((EmbeddingForm.EmbedLayerNormalization, "wte", "wpe", "wse"), (role.Form, role.TokenTable.Name, role.PositionTable?.Name, role.TokenTypeTable?.Name));
        Assert.Same(outputs[0], role.Output);
        Assert.Same(ids, role.TokenIds);
    }
}
