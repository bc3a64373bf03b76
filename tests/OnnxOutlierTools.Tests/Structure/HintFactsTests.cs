using OnnxOutlierTools.IO;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>The recognizer returns hints as facts (kind + data); the report words them. The wording is pinned to what the
/// string hints printed before the split, and the text table and the JSON print the same words.</summary>
public class HintFactsTests
{
    private static (ModelStructure S, RecognitionResult R) Recognize(string flavour, string file)
    {
        using var model = ModelReader.Load(Fixtures.Export(flavour, file));
        var r = StructureRecognizer.Recognize(model);
        return (r.Structure!, r);
    }

    [Fact]
    public void Gpt2Past_FactsAndTheirWords()
    {
        var (s, r) = Recognize("gpt2-torch-past", "gpt2_past.onnx");
        Assert.Equal([HintKind.NoBosToken, HintKind.KvCache], s.Hints.Select(h => h.Kind));
        Assert.Equal(new KvCacheHint(12, 12, true), s.Hints[1]);
        Assert.Equal(["no bos_token_id found next to the model (config.json / genai_config.json): pass the BOS id to probes; the first token is where massive activations and the attention sink live",
            "KV cache on 12 of 12 layers (stacked key/value per layer): calibrate with an empty past and the whole window as one prompt"], s.Hints.Select(StructureReport.HintText));
        Assert.Equal(s.Hints.Select(StructureReport.HintText), StructureReport.ToJson(r, includeTrace: false).Hints);
        var lines = StructureReport.ToText(r, explain: false).Split('\n');
        Assert.All(s.Hints, h => Assert.Contains("hint: " + StructureReport.HintText(h), lines));
    }

    [Fact]
    public void BertEncoder_TiedHeadAndSharedInitializerFacts()
    {
        var (s, _) = Recognize("bert-toy-torch", "bert_toy_optimized.onnx");
        Assert.Equal([HintKind.EncoderSpecialTokens, HintKind.TiedLmHead, HintKind.SharedInitializers], s.Hints.Select(h => h.Kind));
        Assert.Equal("bert.embeddings.word_embeddings.weight", ((TiedLmHeadHint)s.Hints[1]).Table.Name);
        Assert.Equal("1 initializer(s) shared by several roles ('bert.embeddings.word_embeddings.weight' by 2 roles): folding a scale into one role's tensor " +
            "changes every role that shares it; give the role its own copy first (see 'shared initializers')", StructureReport.HintText(s.Hints[2]));
    }

    [Fact]
    public void LlamaTorchPast_PositionIdsFactNamesTheInput()
    {
        var (s, _) = Recognize("llama-torch-past", "model.onnx");
        var positions = Assert.Single(s.Hints.OfType<PositionIdsHint>());
        Assert.Same(s.Inputs.PositionIds, positions.Input);
        Assert.Equal("position ids are the input 'position_ids': a prepended constant sink shifts them by +1", StructureReport.HintText(positions));
    }
}
