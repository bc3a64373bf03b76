using OnnxOutlierTools.IO;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>The attention mask's kind (<see cref="AttentionMaskRole"/>) on a real export of every attention form the recognizer
/// knows: what the sink-bias rewrite needs to know before it edits a mask. The expected kinds come from each op's input
/// signature (ORT contrib-op docs, ONNX Attention-23) and the graphs themselves.</summary>
public class AttentionMaskTests
{
    public sealed record Expect(string Folder, string File, string Form, MaskKind Kind, MaskOrigin Origin, bool? Causal, MaskKind[] InputKinds);

    public static TheoryData<Expect> Cases => new()
    {
        // GroupQueryAttention: seqlens_k (from attention_mask: ReduceSum - 1) and total_sequence_length; causal by definition.
        new("exports/llama-genai-gqa-fp32", "model.onnx", "GroupQueryAttention", MaskKind.SeqLensK, MaskOrigin.DerivedFromAttentionMask, true,
            [MaskKind.SeqLensK, MaskKind.TotalSequenceLength]),
        // MultiHeadAttention: attention_bias (input 5), built from attention_mask by the genai builder; unidirectional unset.
        new("exports/llama-genai-mha-fp16", "model.onnx", "MultiHeadAttention", MaskKind.AdditiveBias, MaskOrigin.DerivedFromAttentionMask, false,
            [MaskKind.AdditiveBias]),
        // com.microsoft Attention (GPT-2 fused): mask_index is the raw 2-D attention_mask graph input; unidirectional=1.
        new("exports/gpt2-ort-fused-fp32", "past.onnx", "com.microsoft::Attention", MaskKind.KeyPaddingMask, MaskOrigin.GraphInput, true,
            [MaskKind.KeyPaddingMask]),
        // ai.onnx Attention-23 (mobius): a float attn_mask computed from shapes (the model has no attention_mask input).
        new("exports/llama-mobius-opset24", "model.onnx", "Attention", MaskKind.AdditiveBias, MaskOrigin.Computed, false, [MaskKind.AdditiveBias]),
        // ai.onnx Attention with a TensorScatter cache: no mask, is_causal=1.
        new("exports-modern/llama-tensorscatter-mobius", "model.onnx", "Attention", MaskKind.Causal, MaskOrigin.None, true, []),
        // Decomposed (Llama torch export): scores + causal_mask (the bool mask turned into 0/-inf by a Where).
        new("exports/llama-torch-nopast", "model.onnx", "decomposed", MaskKind.AdditiveBias, MaskOrigin.DerivedFromAttentionMask, null, [MaskKind.AdditiveBias]),
        // Decomposed (BERT): scores + (1 - mask) * -10000.
        new("exports/bert-toy-torch", "bert_toy_optimized.onnx", "decomposed", MaskKind.AdditiveBias, MaskOrigin.DerivedFromAttentionMask, null, [MaskKind.AdditiveBias]),
        // Decomposed (DistilBERT, Optimum): Where(mask == 0, -inf, scores).
        new("exports/distilbert-optimum", "model.onnx", "decomposed", MaskKind.BooleanMask, MaskOrigin.DerivedFromAttentionMask, null, [MaskKind.BooleanMask]),
        // Decomposed (legacy GPT-2): w * b - 1e4 * (1 - b) with b a slice of the causal buffer.
        new("exports/gpt2-torch-nopast", "GPT2Model.onnx", "decomposed", MaskKind.MultiplicativeMask, MaskOrigin.Computed, null,
            [MaskKind.MultiplicativeMask, MaskKind.AdditiveBias]),
        // Custom-op SDPA (torch.export): a boolean attn_mask from attention_mask.
        new("exports-modern/phi4-mini-2layer-torchexport", "microsoft_Phi-4-mini-reasoning-custom-default-f32-cpu.onnx", "aten::scaled_dot_product_attention",
            MaskKind.BooleanMask, MaskOrigin.DerivedFromAttentionMask, null, [MaskKind.BooleanMask]),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Recognize_AttentionForm_ReportsMaskKind(Expect e)
    {
        using var model = ModelReader.Load(Fixtures.Path([.. e.Folder.Split('/'), e.File]), new LoadOptions { RequireExternalData = false });
        var s = StructureRecognizer.Recognize(model).Structure!;
        Assert.NotEmpty(s.Blocks);
        foreach (var b in s.Blocks.Where(b => b.Attention is not null))
        {
            var a = b.Attention!;
            Assert.Equal(e.Form, a.Form.ToString());
            var m = a.MaskRole;
            Assert.Equal(e.Kind, m.Kind);
            Assert.Equal(e.Origin, m.Origin);
            Assert.Equal(e.Causal, m.Causal);
            Assert.Equal(e.InputKinds, m.Inputs.Select(i => i.Kind).ToArray());
            if (m.Kind is not (MaskKind.None or MaskKind.Causal)) Assert.Same(m.Value, m.Inputs[0].Value);
        }
    }

    [Fact]
    public void Gqa_SeqLensK_IsInt32FromAttentionMask()
    {
        using var model = ModelReader.Load(Fixtures.Export("llama-genai-gqa-fp32", "model.onnx"));
        var a = StructureRecognizer.Recognize(model).Structure!.Blocks[0].Attention!;
        Assert.Same(a.Mask, a.MaskRole.Value); // the old field keeps naming seqlens_k
        Assert.Equal(TensorDataType.Int32, AttentionMasks.ElementType(a.MaskRole.Value!));
        Assert.Equal(5, a.MaskRole.Inputs[0].InputIndex);
        // total_sequence_length comes from attention_mask's shape only.
        Assert.Equal(MaskOrigin.Computed, a.MaskRole.Inputs[1].Origin);
    }

    [Fact]
    public void Qwen35_GqaWithAttentionBias_ListsAllThreeMaskInputs()
    {
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", "qwen35-0.8b-int8dyn-graphonly", "decoder_model_merged_quantized.onnx"),
            new LoadOptions { RequireExternalData = false });
        var a = StructureRecognizer.Recognize(model).Structure!.Blocks.First(b => b.Attention is not null).Attention!;
        Assert.Equal(MaskKind.SeqLensK, a.MaskRole.Kind);
        Assert.Equal([MaskKind.SeqLensK, MaskKind.TotalSequenceLength, MaskKind.AdditiveBias], a.MaskRole.Inputs.Select(i => i.Kind).ToArray());
        Assert.Equal([5, 6, 10], a.MaskRole.Inputs.Select(i => i.InputIndex ?? -1).ToArray());
        // This export's seqlens_k is total_length - 1 from Shape(attention_mask), expanded to the batch: padding is ignored.
        Assert.Equal(MaskOrigin.Computed, a.MaskRole.Origin);
        Assert.Equal(MaskOrigin.DerivedFromAttentionMask, a.MaskRole.Inputs[2].Origin);
    }

    [Fact]
    public void Report_ShowsMaskKindInTableAndJson()
    {
        using var model = ModelReader.Load(Fixtures.Export("llama-genai-gqa-fp32", "model.onnx"));
        var result = StructureRecognizer.Recognize(model);
        Assert.Contains("mask seqLensK ", StructureReport.ToText(result, explain: false));
        string json = StructureReport.Serialize(StructureReport.ToJson(result, includeTrace: false));
        Assert.Contains("\"maskRole\"", json);
        Assert.Contains("\"kind\": \"seqLensK\"", json);
        Assert.Contains("\"mask\": \"/model/attn_mask_reformat", json); // the old field is kept
    }
}
