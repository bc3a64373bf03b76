using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using Form = OnnxOutlierTools.Tests.Structure.EncoderDecoderTests.Form;
using static OnnxOutlierTools.Tests.Structure.EncoderGraphs;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>The encoder side of encoder-decoder models (#7 item 7): T5's, Whisper's and BART's encoder stacks
/// (<see cref="EncoderGraphs"/>) run in ONNX Runtime, attend both ways, and are recognized as encoders: bidirectional
/// self-attention, no cache, no cross-attention, no LM head, T5's relative position bias.</summary>
public class EncoderTests
{
    private static IReadOnlyList<TensorData> Inputs(Form form, bool changeLast)
    {
        if (form == Form.Whisper)
        {
            var features = Enumerable.Range(0, Mel * 2 * T).Select(i => MathF.Sin(0.3f * i)).ToArray();
            if (changeLast) for (int m = 0; m < Mel; m++) features[m * 2 * T + 2 * T - 1] += 3f; // the last frame of every mel bin
            return [TensorData.Create("input_features", features, 1, Mel, 2 * T)];
        }
        long[] ids = [3, 1, 4, 1, 5, 9, changeLast ? 26 : 2];
        return [TensorData.Create("input_ids", ids, 1, T), TensorData.Create("attention_mask", Enumerable.Repeat(1L, T).ToArray(), 1, T)];
    }

    [Theory]
    [InlineData(Form.T5)]
    [InlineData(Form.Whisper)]
    [InlineData(Form.Bart)]
    public void Encoder_RunsInOrt_AndTheFirstPositionSeesTheLast(Form form)
    {
        // Bidirectional attention, measured: changing only the last token (frame) changes the first position's output.
        using var model = Build(form);
        using var dir = new TempFolder("encoder");
        string path = dir.Path("encoder_model.onnx");
        ModelWriter.Save(model, path);
        using var session = SessionFactory.Open(path, SessionSettings.CpuUnoptimized);
        var before = session.Run(Inputs(form, changeLast: false))[0].ToSingleArray();
        var after = session.Run(Inputs(form, changeLast: true))[0].ToSingleArray();
        Assert.Equal(T * D, before.Length);
        Assert.All(before, v => Assert.True(float.IsFinite(v)));
        double firstPositionChange = Enumerable.Range(0, D).Max(i => Math.Abs(after[i] - before[i]));
        Assert.True(firstPositionChange > 1e-4, $"position 0 moved by {firstPositionChange}");
    }

    [Theory]
    [InlineData(Form.T5, NormPlacement.PreNorm, NormKind.RmsNorm)]
    [InlineData(Form.Whisper, NormPlacement.PreNorm, NormKind.LayerNorm)]
    [InlineData(Form.Bart, NormPlacement.PostNorm, NormKind.LayerNorm)]
    public void Encoder_IsRecognizedAsAnEncoder(Form form, NormPlacement placement, NormKind normKind)
    {
        using var model = Build(form);
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(ModelArchitecture.Encoder, s.Architecture);
        Assert.Equal(placement, s.Placement);
        Assert.Equal(2, s.Blocks.Count);
        Assert.Null(s.LmHead);
        foreach (var blk in s.Blocks)
        {
            string p = $"encoder.block.{blk.Index}.layer";
            Assert.Empty(StructureReport.Missing(blk));
            Assert.Null(blk.CrossAttention);
            var a = blk.Attention!;
            Assert.Null(a.Cache);
            Assert.NotEqual(true, a.MaskRole.Causal);
            Assert.Equal((H, H, Hd), (a.NumHeads, a.KvHeads, a.HeadSize));
            Assert.Equal($"{p}.0.SelfAttention.q.weight", a.Query!.Weight.Name);
            Assert.Equal($"{p}.0.SelfAttention.o.weight", a.Output!.Weight.Name);
            Assert.Equal(normKind, blk.AttentionNorm!.Kind);
            Assert.Equal($"{p}.0.layer_norm.weight", blk.AttentionNorm.Gain.Name);
            Assert.Equal($"{p}.1.layer_norm.weight", blk.FfnNorm!.Gain.Name);
            Assert.Equal($"{p}.1.DenseReluDense.wo.weight", blk.Ffn!.Down.Weight.Name);
            Assert.Equal(form == Form.Whisper ? MaskKind.None : MaskKind.AdditiveBias, a.MaskRole.Kind);
            if (form == Form.T5)
            {
                // Computed once (bidirectional buckets), reused by both layers.
                Assert.Equal("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", a.PositionBias!.Table.Name);
                Assert.Equal((8L, 2L), (a.PositionBias.Buckets, a.PositionBias.Heads));
            }
            else Assert.Null(a.PositionBias);
        }
        if (placement == NormPlacement.PreNorm) Assert.Equal("encoder.final_layer_norm.weight", s.FinalNorm!.Gain.Name);
        Assert.Contains($"{(placement == NormPlacement.PreNorm ? "pre" : "post")}-norm encoder block(s)", StructureReport.ToText(result, explain: false));
        Assert.Equal("encoder", StructureReport.ToJson(result, includeTrace: false).Architecture);
    }

    [Theory]
    [InlineData(Form.T5)]
    [InlineData(Form.Whisper)]
    public void PreNormStackWithACausalMask_IsADecoder(Form form)
    {
        // Near miss: the same pre-norm stack with a precomputed causal mask on the scores is a decoder (GPT-2's base model
        // has no cache and no LM head either).
        using var model = Build(form, causalMask: true);
        var s = StructureRecognizer.Recognize(model).Structure!;
        Assert.Equal(2, s.Blocks.Count);
        Assert.Equal(ModelArchitecture.Decoder, s.Architecture);
    }
}

/// <summary>Encoder and decoder in one graph (a seq2seq model exported as one file): the encoder's blocks come first, the
/// decoder's cross-attentions read the encoder's last hidden state from inside the graph.</summary>
public class CombinedEncoderDecoderTests
{
    [Theory]
    [InlineData(Form.T5)]
    [InlineData(Form.Whisper)]
    [InlineData(Form.Bart)]
    public void Combined_RunsInOrt_EncoderThenDecoderBlocks(Form form)
    {
        using var model = EncoderDecoderTests.Build(form: form, combined: true);
        using (var dir = new TempFolder("seq2seq"))
        {
            string path = dir.Path("model.onnx");
            ModelWriter.Save(model, path);
            using var session = SessionFactory.Open(path, SessionSettings.CpuUnoptimized);
            var inputs = new List<TensorData> { TensorData.Create("input_ids", new long[] { 3, 1, 4, 1, 5 }, 1, 5) };
            if (form == Form.Whisper) inputs.Add(TensorData.Create("input_features", Enumerable.Range(0, Mel * 2 * T).Select(i => MathF.Cos(0.2f * i)).ToArray(), 1, Mel, 2 * T));
            else
            {
                inputs.Add(TensorData.Create("encoder_input_ids", new long[] { 2, 7, 1, 8, 2, 8, 1 }, 1, T));
                inputs.Add(TensorData.Create("encoder_attention_mask", Enumerable.Repeat(1L, T).ToArray(), 1, T));
            }
            var logits = session.Run(inputs)[0].ToSingleArray();
            Assert.Equal(5 * Vocab, logits.Length);
            Assert.All(logits, v => Assert.True(float.IsFinite(v)));
        }
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(ModelArchitecture.EncoderDecoder, s.Architecture);
        Assert.Equal(4, s.Blocks.Count);
        var stack = s.EncoderStack!;
        Assert.Equal(2, stack.BlockCount);
        foreach (var blk in s.Blocks)
        {
            Assert.Empty(StructureReport.Missing(blk));
            bool encoder = blk.Index < stack.BlockCount;
            int layer = encoder ? blk.Index : blk.Index - stack.BlockCount;
            Assert.Equal($"{(encoder ? "encoder" : "decoder")}.block.{layer}.layer.0.SelfAttention.q.weight", blk.Attention!.Query!.Weight.Name);
            Assert.Equal(!encoder, blk.CrossAttention is not null);
            if (!encoder) Assert.Same(stack.Output, blk.CrossAttention!.EncoderOutput);
        }
        Assert.Equal(form == Form.Bart ? null : "encoder.final_layer_norm.weight", stack.FinalNorm?.Gain.Name);
        Assert.Equal(form == Form.Bart ? null : "decoder.final_layer_norm.weight", s.FinalNorm?.Gain.Name);
        Assert.Equal("lm_head.weight", s.LmHead!.Weight.Name);
        var text = StructureReport.ToText(result, explain: false);
        Assert.Contains("4 " + (form == Form.Bart ? "post" : "pre") + "-norm encoder-decoder block(s)", text);
        Assert.Contains($"encoder output  {stack.Output.Name} (blocks 0-1 are the encoder's; the cross-attentions read it)", text);
        var json = StructureReport.ToJson(result, includeTrace: false);
        Assert.Equal(("encoder-decoder", 2, stack.Output.Name), (json.Architecture, json.EncoderStack!.BlockCount, json.EncoderStack.Output));
    }
}
