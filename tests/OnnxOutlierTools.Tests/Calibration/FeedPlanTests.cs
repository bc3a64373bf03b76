using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Runtime;

namespace OnnxOutlierTools.Tests.Calibration;

/// <summary>The calibration feeds of every exported fixture flavour run on ONNX Runtime: each input classified (nothing
/// made up), and where the fixture's own recipe (InputSynthesizer with the manifest's sizes: an independent reference)
/// feeds an empty past and the same ids, the outputs are the recipe's.</summary>
public sealed class FeedPlanTests
{
    public static TheoryData<string> Flavours => FixtureRecipes.Names;

    /// <summary>Recipes with no past (or an empty one) and ids (7i + 3) mod vocab, which is what the plan feeds here.</summary>
    private static readonly HashSet<string> SameAsRecipe = ["distilbert-optimum", "gpt2-torch-nopast", "llama-torch-nopast", "llama-genai-mha-fp16", "llama-mobius-opset24"];

    [Theory]
    [MemberData(nameof(Flavours))]
    public void Plan_EveryFixture_RunsOnOrt(string flavour)
    {
        var recipe = FixtureRecipes.Get(flavour);
        using var model = ModelReader.Load(recipe.ModelPath);
        using var nested = flavour == "gpt2-ort-beamsearch" ? NestedDecoder.Extract(model, DecoderOf(model)) : null;
        using var session = InMemoryModel.Open(nested ?? model, SessionSettings.CpuUnoptimized);
        var plan = FeedPlan.Create(flavour, session.Inputs, session.OutputNames);
        Assert.Equal(session.Inputs.Count, plan.Feeds.Count);
        long vocab = recipe.Inputs.IdUpperBound;
        int length = plan.StepMode ? 1 : 4;
        var ids = Enumerable.Range(0, length).Select(i => (int)((7 * i + 3) % vocab)).ToArray();
        var outputs = session.Run(plan.Build(1, length, ids, 0, null));
        if (outputs[0].Dims.Count == 3) Assert.Equal(length, outputs[0].Dims[1]);
        foreach (var output in outputs.Where(o => o.ElementType.IsFloatingPoint()))
            Assert.True(output.ToSingleArray().All(float.IsFinite), $"{flavour}: {output.Name} has non-finite values");
        if (SameAsRecipe.Contains(flavour))
        {
            // The first output (logits / hidden states); a static cache's untouched slots keep the recipe's random fill.
            var expected = ReferenceRuns.Original(flavour).Outputs[0];
            Assert.True(TensorComparison.AllClose(expected, outputs[0], 1e-5, 1e-5), $"{flavour}: {TensorComparison.Compare(expected, outputs[0])}");
        }
    }

    [Fact]
    public void Plan_StepModel_FeedsPresentsBackAsPasts()
    {
        var recipe = FixtureRecipes.Get("gpt2-torch-past");
        using var model = ModelReader.Load(recipe.ModelPath);
        using var session = InMemoryModel.Open(model, SessionSettings.CpuUnoptimized);
        var plan = FeedPlan.Create("gpt2-torch-past", session.Inputs, session.OutputNames);
        Assert.True(plan.StepMode);
        Assert.Equal(12, plan.PresentToPast.Count);
        Assert.Equal("past_3", plan.PresentToPast["present_3"]);
        Dictionary<string, TensorData>? cache = null;
        for (int t = 0; t < 3; t++)
        {
            var outputs = session.Run(plan.Build(1, 1, new[] { (t * 5 + 1) % 20 }, t, cache));
            var present = outputs.Single(o => o.Name == "present_0");
            Assert.Equal([2L, 1, 2, t + 1, 2], present.Dims);
            cache = plan.PresentToPast.ToDictionary(p => p.Value, p => new TensorData(p.Value, outputs.Single(o => o.Name == p.Key).Tensor));
        }
    }

    [Fact]
    public void Plan_UnknownInput_IsRefusedByName()
    {
        var inputs = new[]
        {
            new InputSpec("input_ids", TensorDataType.Int64, [Dim.Symbolic("batch"), Dim.Symbolic("seq")]),
            new InputSpec("speaker_embedding", TensorDataType.Float, [Dim.Symbolic("batch"), new Dim(16)]),
        };
        var error = Assert.Throws<CalibrationException>(() => FeedPlan.Create("m.onnx", inputs, ["logits"]));
        Assert.Contains("'speaker_embedding'", error.Message);
    }

    [Fact]
    public void Plan_InputsEmbedsDecoder_SaysWhy()
    {
        var inputs = new[] { new InputSpec("inputs_embeds", TensorDataType.Float, [Dim.Symbolic("batch"), Dim.Symbolic("seq"), new Dim(64)]) };
        var error = Assert.Throws<CalibrationException>(() => FeedPlan.Create("m.onnx", inputs, ["logits"]));
        Assert.Contains("inputs_embeds", error.Message);
    }

    private static Graph DecoderOf(Model model) =>
        model.Graph.Nodes.Single(n => n.OpType == "BeamSearch").Attributes.Single(a => a.Name == "decoder").Graphs.Single();
}
