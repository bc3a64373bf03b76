using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Linears whose weight is one slice of a stack picked at run time by Gather(stacked, index) (Qwen3-TTS's code
/// predictor: one LM head per code group, chosen by <c>step_index</c>). The role keeps the stacked initializer as the weight
/// and says how it is sliced; the per-slice geometry is checked against ONNX Runtime with a float64 reference.</summary>
public class SelectedWeightTests
{
    private const int Groups = 3, In = 8, Out = 6, T = 4;

    private static float[] Stack() => Enumerable.Range(0, Groups * Out * In).Select(i => MathF.Sin(0.37f * i) * 0.5f).ToArray();

    /// <summary>y = x @ Transpose(Gather(stack [groups, out, in], index)), or without the Transpose for an [groups, in, out] stack.</summary>
    private static Model Build(bool transposed, Func<GraphBuilder, Value> index)
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, T, In);
        var stack = transposed ? b.Initializer("stacked_head", Stack(), Groups, Out, In) : b.Initializer("stacked_head", Stack(), Groups, In, Out);
        var slice = b.Node("Gather", [stack, index(b)], [Attr.Int("axis", 0)])[0];
        var w = transposed ? b.Node("Transpose", [slice], [Attr.Ints("perm", 1, 0)])[0] : slice;
        b.Output(b.Op("MatMul", x, w), TensorDataType.Float, 1, T, Out);
        return b.ToModel(irVersion: 8, new OpsetId("", 17));
    }

    private static float[] Activations() => Enumerable.Range(0, T * In).Select(i => MathF.Cos(0.23f * i)).ToArray();

    /// <summary>x @ W[slice] in float64, W read through the role: its layout and per-slice features decide the indexing.</summary>
    private static double[] Reference(LinearRole l, float[] stack, float[] x, long slice)
    {
        long sliceSize = l.InFeatures * l.OutFeatures;
        var y = new double[T * l.OutFeatures];
        for (int t = 0; t < T; t++)
            for (long o = 0; o < l.OutFeatures; o++)
            {
                double sum = 0;
                for (long i = 0; i < l.InFeatures; i++)
                {
                    long at = l.Layout == WeightLayout.OutIn ? o * l.InFeatures + i : i * l.OutFeatures + o;
                    sum += (double)x[t * l.InFeatures + i] * stack[slice * sliceSize + at];
                }
                y[t * l.OutFeatures + o] = sum;
            }
        return y;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void RuntimeIndex_EverySliceMatchesTheRolesGeometry_InOrt(bool transposed)
    {
        using var model = Build(transposed, b => b.Input("step_index", TensorDataType.Int64));
        var l = Assert.Single(LinearRules.Find(new Matcher(model.Graph)));
        Assert.Equal((In, Out), (l.InFeatures, l.OutFeatures));
        Assert.Equal(transposed ? WeightLayout.OutIn : WeightLayout.InOut, l.Layout);
        Assert.Equal("stacked_head", l.Weight.Name);
        var sel = Assert.IsType<WeightSelection>(l.Selection);
        Assert.Same(l.Weight, sel.Stacked);
        Assert.Equal(("step_index", (long?)null, 0, (long)Groups), (sel.Index.Name, sel.IndexValue, sel.Axis, sel.Count));
        Assert.Equal("Gather", sel.Gather.OpType);
        Assert.Equal(transposed ? 1 : 0, l.WeightPath.Count);

        using var dir = new TempFolder("selected");
        string path = dir.Path("model.onnx");
        ModelWriter.Save(model, path);
        using var session = SessionFactory.Open(path, SessionSettings.CpuUnoptimized);
        var x = Activations();
        for (long slice = 0; slice < Groups; slice++)
        {
            var y = session.Run([TensorData.Create("x", x, 1, T, In), TensorData.Create("step_index", new[] { slice })])[0].ToDoubleArray();
            var expected = Reference(l, Stack(), x, slice);
            for (int k = 0; k < y.Length; k++) Assert.True(Math.Abs(y[k] - expected[k]) < 1e-5, $"slice {slice} element {k}: {y[k]} vs {expected[k]}");
        }
    }

    [Fact]
    public void ConstantIndex_IsRecordedAsTheSliceNumber()
    {
        using var model = Build(true, b => b.Scalar("which", 2L));
        var l = Assert.Single(LinearRules.Find(new Matcher(model.Graph)));
        Assert.Equal(2L, l.Selection!.IndexValue);
    }

    [Fact]
    public void OneElementVectorIndex_KeepsTheStackAxis_IsNoLinear()
    {
        // Near miss: Gather with a [1] index returns [1, out, in]; the MatMul is then batched over the stack, not a linear.
        using var model = Build(true, b => b.Input("step_index", TensorDataType.Int64, 1));
        var matcher = new Matcher(model.Graph);
        Assert.Empty(LinearRules.Find(matcher));
        Assert.Contains("the index is not a scalar", matcher.NearMisses["MatMul(selected weight)"].ToString());
    }

    [Fact]
    public void GatherOfA2DTable_IsNoSelectedWeight()
    {
        // Near miss: a row lookup of a 2-D table (an embedding-like Gather) is not a stack of weights.
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, T, In);
        var table = b.Initializer("table", new float[In * In * Out], In * Out, In);
        var rows = b.Node("Gather", [table, b.Initializer("rows", Enumerable.Range(0, In).Select(i => (long)i).ToArray(), In)], [Attr.Int("axis", 0)])[0];
        b.Op("MatMul", x, rows);
        Assert.Empty(LinearRules.Find(new Matcher(b.Graph)));
    }

    [Fact]
    public void Qwen3TtsFixture_LmHeadIsTheStepSelectedSliceOfTheStack()
    {
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", "qwen3-tts-codepredictor-mobius", "model.onnx"));
        var result = StructureRecognizer.Recognize(model);
        var head = Assert.IsType<LinearRole>(result.Structure!.LmHead);
        Assert.Equal("code_predictor.stacked_lm_head", head.Weight.Name);
        Assert.Equal((8L, 6L, WeightLayout.OutIn), (head.InFeatures, head.OutFeatures, head.Layout));
        Assert.Equal(("step_index", 3L), (head.Selection!.Index.Name, head.Selection.Count));
        Assert.Equal("logits", head.Output.Name);
        Assert.Contains("lm head         code_predictor.stacked_lm_head [8->6] (out,in), slice step_index of 3 (Gather axis 0)",
            StructureReport.ToText(result, explain: false).Split('\n'));
        var json = StructureReport.ToJson(result, includeTrace: false).LmHead!;
        Assert.Equal(("code_predictor.stacked_lm_head", "step_index", (long?)null, 0, 3L),
            (json.WeightSelection!.Stacked, json.WeightSelection.Index, json.WeightSelection.IndexValue, json.WeightSelection.Axis, json.WeightSelection.Count));
    }

    [Fact]
    public void Qwen3TtsFixture_LogitsAreTheFinalNormTimesTheSelectedSlice_InOrt()
    {
        // The real model, run by ORT with its final-norm output exposed: for each step, logits = norm @ stacked[step]^T,
        // computed in float64 from the initializer the role names with the role's layout and per-slice features.
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", "qwen3-tts-codepredictor-mobius", "model.onnx"));
        var head = StructureRecognizer.Recognize(model).Structure!.LmHead!;
        var stack = head.Weight.ConstValue!.ToSingleArray();
        var norm = head.Input;
        norm.SetTensorType(TensorDataType.Float, null);
        model.Graph.AddOutput(norm);
        using var dir = new TempFolder("qwen3tts");
        string path = dir.Path("model.onnx");
        ModelWriter.Save(model, path);
        using var session = SessionFactory.Open(path, SessionSettings.CpuUnoptimized);
        var embeds = Enumerable.Range(0, T * In).Select(i => MathF.Sin(0.11f * i + 0.5f)).ToArray();
        var inputs = new List<TensorData>
        {
            TensorData.Create("inputs_embeds", embeds, 1, T, In),
            TensorData.Create("attention_mask", Enumerable.Repeat(1L, T).ToArray(), 1, T),
            TensorData.Create("position_ids", Enumerable.Range(0, T).Select(i => (long)i).ToArray(), 1, T),
        };
        for (int layer = 0; layer < 5; layer++)
            foreach (var kind in new[] { "key", "value" })
                inputs.Add(TensorData.Create($"past_key_values.{layer}.{kind}", Array.Empty<float>(), 1, 8, 0, 128));
        for (long step = 0; step < head.Selection!.Count; step++)
        {
            var outputs = session.Run([.. inputs, TensorData.Create("step_index", new[] { step })], ["logits", norm.Name]);
            var logits = outputs[0].ToDoubleArray();
            var x = outputs[1].ToSingleArray();
            var expected = Reference(head, stack, x, step);
            Assert.Equal(expected.Length, logits.Length);
            for (int k = 0; k < logits.Length; k++) Assert.True(Math.Abs(logits[k] - expected[k]) < 1e-4, $"step {step} logit {k}: {logits[k]} vs {expected[k]}");
        }
    }
}
