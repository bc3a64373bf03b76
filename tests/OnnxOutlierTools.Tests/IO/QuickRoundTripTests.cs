using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Tests.IO;

public class QuickRoundTripTests
{
    public static TheoryData<string> Models => new()
    {
        "bert-toy-torch/bert_toy_optimized.onnx", "distilbert-optimum/model.onnx", "gpt2-ort-beamsearch/tiny_gpt2_beamsearch.onnx",
        "gpt2-ort-fused-fp16/past.onnx", "gpt2-ort-fused-fp32/past.onnx", "gpt2-torch-nopast/GPT2Model.onnx",
        "gpt2-torch-past/gpt2_past.onnx", "llama-genai-gqa-fp32/model.onnx", "llama-genai-mha-fp16/model.onnx",
        "llama-mobius-opset24/model.onnx", "llama-torch-nopast/model.onnx", "llama-torch-past/model.onnx",
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void Convert_UneditedModel_GivesTheProtobufItWasReadFrom(string relative)
    {
        string path = Fixtures.Path("exports", relative);
        var original = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        using var model = ModelReader.Load(path);
        var back = new ProtoConverter(v => v.ConstValue!.Storage == Tensors.TensorStorage.External
            ? original.Graph.Initializer.First(t => t.Name == v.Name)
            : ProtoConverter.Embedded(v.Name, v.ConstValue!)).ToProto(model);
        Assert.Equal(original, back);
        Assert.Equal(original.ToByteArray(), back.ToByteArray());
    }
}
