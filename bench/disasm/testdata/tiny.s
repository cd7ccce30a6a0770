# A tiny hand-written example for test_gaslist.py: instructions, inline data,
# padding of each kind and a second code section.
	.text
	.globl	f
f:
	pushq	%rbp
	movq	%rsp, %rbp
	rep;stosb
	jmp	1f
	.byte	0x48, 0x8b, 0x05
	.ascii	"hi"
1:
	popq	%rbp
	ret
	.p2align 4,,10
g:	xorl	%eax, %eax; ret
	.p2align 3,0
	.long	7
	.p2align 4,0xcc
	.section	.text.startup,"ax",@progbits
	.globl	_start
_start:
	call	f
	hlt
	.section	.rodata
	.long	1
