using OnnxOutlierTools.Import;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Our own llama2.c importer's flavours are recognized like the exporters they imitate.</summary>
public class RecognizerImporterTests
{
    public static TheoryData<string, string> Flavours => new()
    {
        { nameof(LlamaOnnxFlavour.Decomposed), "decomposed" },
        { nameof(LlamaOnnxFlavour.DecomposedWithPast), "decomposed" },
        { nameof(LlamaOnnxFlavour.GenAiGqa), "GroupQueryAttention" },
    };

    [Theory]
    [MemberData(nameof(Flavours))]
    public void Recognize_Stories260KFlavour_GivesFiveCompleteBlocks(string flavour, string attentionForm)
    {
        var weights = Llama2cCheckpoint.Load(Fixtures.Path("llama2c", "stories260K.bin"));
        using var model = LlamaOnnxBuilder.Build(weights, new LlamaOnnxOptions { Flavour = Enum.Parse<LlamaOnnxFlavour>(flavour) });
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(5, s.Blocks.Count);
        Assert.Equal(NormPlacement.PreNorm, s.Placement);
        RecognizerFixtureTests.AssertCompleteBlocks(s);
        Assert.All(s.Blocks, b =>
        {
            Assert.Equal(attentionForm, b.Attention!.Form.ToString());
            Assert.False(b.ParallelResidual);
            Assert.Equal((8, 4, 8), (b.Attention.NumHeads, b.Attention.KvHeads, b.Attention.HeadSize));
            Assert.Equal((FfnKind.Glu, FfnActivation.Silu, 172L), (b.Ffn!.Kind, b.Ffn.Activation, b.Ffn.Down.InFeatures));
            Assert.Equal(flavour != nameof(LlamaOnnxFlavour.Decomposed), b.Attention.Cache is not null);
        });
        Assert.NotNull(s.FinalNorm);
        Assert.Equal(512, s.LmHead!.OutFeatures);
    }

    [Fact]
    public void Recognize_FusedRotaryGqa_ReportsRotaryInsideTheOp()
    {
        var config = new DecoderConfig(64, 128, 2, 4, 2, 128, 64);
        using var model = SyntheticDecoder.CreateModel(config, 5, new LlamaOnnxOptions { Flavour = LlamaOnnxFlavour.GenAiGqa, GqaRotary = GqaRotary.Fused });
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message);
        RecognizerFixtureTests.AssertCompleteBlocks(result.Structure!);
        Assert.All(result.Structure!.Blocks, b =>
        {
            Assert.NotNull(b.Attention!.PackedQkv);
            Assert.Equal(RotaryStyle.InAttentionOp, b.Attention.Rotary.Style);
            Assert.Equal((4, 2, 16), (b.Attention.NumHeads, b.Attention.KvHeads, b.Attention.HeadSize));
        });
    }
}
