using OnnxOutlierTools.IO;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Every exporter flavour in ../shared/fixtures is recognized with the block count, layout and
/// head geometry the MANIFEST states, and every block has the complete role set.</summary>
public class RecognizerFixtureTests
{
    /// <summary>Expected facts per fixture (from MANIFEST.md); null = not stated there, not checked.</summary>
    public sealed record Expect(string File, int Blocks, NormPlacement Placement, string Attention, int? Heads, int? KvHeads, int? HeadSize,
        FfnKind FfnKind, long FfnWidth, bool Cache, bool FinalNorm, long? Vocab, bool Nested = false);

    public static TheoryData<Expect> Cases => new()
    {
        new("bert-toy-torch/bert_toy_optimized.onnx", 5, NormPlacement.PostNorm, "decomposed", null, null, null, FfnKind.Mlp, 37, false, false, 99),
        new("distilbert-optimum/model.onnx", 2, NormPlacement.PostNorm, "decomposed", null, null, null, FfnKind.Mlp, 2, false, false, null),
        new("gpt2-ort-beamsearch/tiny_gpt2_beamsearch.onnx", 5, NormPlacement.PreNorm, "com.microsoft::Attention", 4, 4, 8, FfnKind.Mlp, 128, true, true, 1000, Nested: true),
        new("gpt2-ort-fused-fp16/past.onnx", 5, NormPlacement.PreNorm, "com.microsoft::Attention", 4, 4, 8, FfnKind.Mlp, 128, true, true, 1000),
        new("gpt2-ort-fused-fp32/past.onnx", 5, NormPlacement.PreNorm, "com.microsoft::Attention", 4, 4, 8, FfnKind.Mlp, 128, true, true, 1000),
        new("gpt2-torch-nopast/GPT2Model.onnx", 12, NormPlacement.PreNorm, "decomposed", 2, 2, 2, FfnKind.Mlp, 16, false, true, null),
        new("gpt2-torch-past/gpt2_past.onnx", 12, NormPlacement.PreNorm, "decomposed", 2, 2, 2, FfnKind.Mlp, 16, true, true, null),
        new("llama-genai-gqa-fp32/model.onnx", 2, NormPlacement.PreNorm, "GroupQueryAttention", 1, 1, 16, FfnKind.Glu, 64, true, true, 32000),
        new("llama-genai-mha-fp16/model.onnx", 2, NormPlacement.PreNorm, "MultiHeadAttention", 1, 1, 16, FfnKind.Glu, 64, true, true, 32000),
        new("llama-mobius-opset24/model.onnx", 2, NormPlacement.PreNorm, "Attention", 4, 2, 16, FfnKind.Glu, 128, true, true, 256),
        new("llama-torch-nopast/model.onnx", 5, NormPlacement.PreNorm, "decomposed", 8, 4, 8, FfnKind.Glu, 172, false, true, 512),
        new("llama-torch-past/model.onnx", 5, NormPlacement.PreNorm, "decomposed", 8, 4, 8, FfnKind.Glu, 172, true, true, 512),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Recognize_Fixture_GivesCompleteBlocks(Expect e)
    {
        using var model = ModelReader.Load(Fixtures.Path("exports", e.File));
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(e.Blocks, s.Blocks.Count);
        Assert.Equal(e.Placement, s.Placement);
        Assert.Equal(e.Placement == NormPlacement.PostNorm ? ModelArchitecture.Encoder : ModelArchitecture.Decoder, s.Architecture);
        Assert.Equal(e.Nested, s.NestedIn is not null);
        AssertCompleteBlocks(s);
        foreach (var b in s.Blocks)
        {
            Assert.Equal(e.Attention, b.Attention!.Form.ToString());
            Assert.False(b.ParallelResidual, $"block {b.Index} is sequential");
            if (e.Heads is int h) Assert.Equal(h, b.Attention.NumHeads);
            if (e.KvHeads is int kv) Assert.Equal(kv, b.Attention.KvHeads);
            if (e.HeadSize is int d) Assert.Equal(d, b.Attention.HeadSize);
            Assert.Equal(e.FfnKind, b.Ffn!.Kind);
            Assert.Equal(e.FfnWidth, b.Ffn.Down.InFeatures);
            Assert.Equal(e.Cache, b.Attention.Cache is not null);
            if (e.Cache)
            {
                Assert.True(b.Attention.Cache!.PastKey is { IsGraphInput: true }, $"block {b.Index}: past key is a graph input");
                Assert.True(b.Attention.Cache.PresentKey is { IsGraphOutput: true }, $"block {b.Index}: present key is a graph output");
            }
        }
        Assert.Equal(e.FinalNorm, s.FinalNorm is not null);
        if (e.Vocab is long vocab) Assert.Equal(vocab, s.LmHead?.OutFeatures);
        Assert.NotNull(s.Inputs.InputIds);
    }

    /// <summary>All norms, projections, the FFN's down input and the residual stream in and out, with
    /// each layer's projections distinct from the other layers'.</summary>
    internal static void AssertCompleteBlocks(ModelStructure s)
    {
        var weights = new HashSet<string>();
        foreach (var b in s.Blocks)
        {
            Assert.True(StructureReport.Missing(b).Count == 0, $"block {b.Index} is missing {string.Join(", ", StructureReport.Missing(b))}");
            Assert.NotNull(b.ResidualIn);
            Assert.NotNull(b.ResidualOut);
            if (!b.ParallelResidual) Assert.NotNull(b.AttentionResidual);
            Assert.NotNull(b.Ffn!.DownInput);
            Assert.Same(b.Ffn.Down.Input, b.Ffn.DownInput);
            foreach (var l in new[] { b.Attention!.Query, b.Attention.Key, b.Attention.ValueProjection, b.Attention.PackedQkv, b.Attention.Output, b.Ffn!.Gate, b.Ffn.Up, b.Ffn.Down })
                if (l is not null) Assert.True(weights.Add(l.Weight.Name + "@" + l.Node.Name), $"block {b.Index}: {l} is also used by another role");
        }
        // Blocks chain along the residual stream: each block starts where the previous one ended.
        for (int i = 1; i < s.Blocks.Count; i++)
        {
            var previous = s.Blocks[i - 1].ResidualOut;
            var next = s.Blocks[i].ResidualIn;
            bool chained = previous.Value is not null && OnnxOutlierTools.Structure.Rules.GraphWalk.SameTensor(previous.Value, next.Value)
                || previous.Node is not null && previous.Node == next.Node;
            Assert.True(chained, $"block {i} starts at {next} but block {i - 1} ends at {previous}");
        }
    }

    [Fact]
    public void Recognize_MiniLm_IsSixPostNormEncoderBlocks()
    {
        using var model = ModelReader.Load(MiniLm.ModelPath);
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message);
        var s = result.Structure!;
        Assert.Equal(6, s.Blocks.Count);
        Assert.Equal(NormPlacement.PostNorm, s.Placement);
        Assert.Equal(ModelArchitecture.Encoder, s.Architecture);
        AssertCompleteBlocks(s);
        Assert.All(s.Blocks, b =>
        {
            Assert.Equal((12, 32), (b.Attention!.NumHeads, b.Attention.HeadSize));
            Assert.False(b.ParallelResidual);
            Assert.Equal(384, b.Attention.Query!.InFeatures);
            Assert.Equal((FfnKind.Mlp, FfnActivation.GeluErf, 1536L), (b.Ffn!.Kind, b.Ffn.Activation, b.Ffn.Up.OutFeatures));
            Assert.Equal(NormForm.DecomposedLayerNorm, b.AttentionNorm!.Form);
        });
        Assert.NotNull(s.Inputs.TokenTypeIds);
        Assert.NotNull(s.Inputs.AttentionMask);
        Assert.Equal("embeddings.word_embeddings.weight", s.Embedding!.TokenTable.Name);
        Assert.Equal("embeddings.position_embeddings.weight", s.Embedding.PositionTable!.Name);
    }
}
